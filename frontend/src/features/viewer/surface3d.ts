// vtk.js actors of the tumour surface (one per segment), for the Cornerstone3D volume3d viewport.
import vtkDataArray from '@kitware/vtk.js/Common/Core/DataArray';
import vtkImageData from '@kitware/vtk.js/Common/DataModel/ImageData';
import vtkImageMarchingCubes from '@kitware/vtk.js/Filters/General/ImageMarchingCubes';
import vtkWindowedSincPolyDataFilter from '@kitware/vtk.js/Filters/General/WindowedSincPolyDataFilter';
import vtkActor from '@kitware/vtk.js/Rendering/Core/Actor';
import vtkMapper from '@kitware/vtk.js/Rendering/Core/Mapper';
import type { Geometry } from '../editing/labelmap';
import type { Segment } from './dicomSeg';
import { boundingBox, cropBinary, cropPointsToWorld, stepFor } from './surface';

export interface SurfaceActor {
  uid: string;
  actor: ReturnType<typeof vtkActor.newInstance>;
  segment: number;
  triangles: number;
}

/** One closed surface per segment present in `labels`; the outermost segments translucent. */
export function surfaceActors(labels: ArrayLike<number>, grid: Geometry, segments: Segment[]): SurfaceActor[] {
  const out: SurfaceActor[] = [];
  const present = segments.filter((s) => s.number > 0);
  const translucent = largest(labels, present);
  for (const segment of present) {
    const match = (v: number) => v === segment.number;
    const box = boundingBox(labels, grid.dimensions, match);
    if (!box) continue;
    const crop = cropBinary(labels, grid.dimensions, box, match, stepFor(box));
    const image = vtkImageData.newInstance();
    image.setDimensions(crop.dims);
    image.setSpacing([1, 1, 1]);
    image.setOrigin([0, 0, 0]);
    image.getPointData().setScalars(vtkDataArray.newInstance({ numberOfComponents: 1, values: crop.data, name: 'inside' }));
    const cubes = vtkImageMarchingCubes.newInstance({ contourValue: 0.5, computeNormals: false, mergePoints: true });
    cubes.setInputData(image);
    const smooth = vtkWindowedSincPolyDataFilter.newInstance({ numberOfIterations: 12, passBand: 0.1, nonManifoldSmoothing: true });
    smooth.setInputConnection(cubes.getOutputPort());
    const polydata = smooth.getOutputData();
    const points = polydata.getPoints().getData() as Float32Array;
    cropPointsToWorld(points, crop, grid);
    polydata.getPoints().modified();
    polydata.modified();
    const mapper = vtkMapper.newInstance();
    mapper.setInputData(polydata);
    const actor = vtkActor.newInstance();
    actor.setMapper(mapper);
    const [r, g, b] = segment.rgb.map((c) => c / 255);
    actor.getProperty().setColor(r, g, b);
    // the largest region (oedema around the core) is drawn translucent so the core shows through
    actor.getProperty().setOpacity(segment.number === translucent ? 0.35 : 1);
    out.push({ uid: `glioscope-surface-${segment.number}`, actor, segment: segment.number, triangles: polydata.getNumberOfPolys() });
  }
  return out;
}

function largest(labels: ArrayLike<number>, segments: Segment[]): number {
  const counts = new Map<number, number>();
  for (let i = 0; i < labels.length; i++) if (labels[i]) counts.set(labels[i], (counts.get(labels[i]) ?? 0) + 1);
  let best = -1;
  let bestCount = -1;
  for (const s of segments) if ((counts.get(s.number) ?? 0) > bestCount) [best, bestCount] = [s.number, counts.get(s.number) ?? 0];
  return best;
}
