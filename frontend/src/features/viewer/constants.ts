// What the viewer's parts share: the viewports, the tumour segmentation's ids and the labelmap's type.
import type { MutableRefObject } from 'react';
import { Enums, type Types } from '@cornerstonejs/core';
import { Enums as ToolEnums } from '@cornerstonejs/tools';
import type { Segment } from './dicomSeg';

export const VIEWPORTS = [
  { id: 'axial', label: 'Axial', orientation: Enums.OrientationAxis.AXIAL },
  { id: 'sagittal', label: 'Sagittal', orientation: Enums.OrientationAxis.SAGITTAL },
  { id: 'coronal', label: 'Coronal', orientation: Enums.OrientationAxis.CORONAL },
];
export const MPR_IDS = VIEWPORTS.map((v) => v.id);
export const VIEW_3D = 'surface3d';
export const ROLES = ['T1', 'T1c', 'T2', 'FLAIR'];
export const SEG_ID = 'glioscope-tumour';
export const LABELMAP_ID = `${SEG_ID}-labelmap`;
export const LABELMAP = ToolEnums.SegmentationRepresentations.Labelmap;
export const DEFAULT_SEGMENTS: Segment[] = [1, 2, 3].map((n) => ({ number: n, label: `Segment ${n}`, rgb: [255, 0, 0] }));

export type LabelVolume = Types.IImageVolume & {
  voxelManager: { getCompleteScalarDataArray: () => ArrayLike<number>; setCompleteScalarDataArray: (d: ArrayLike<number>) => void };
};

/** The viewport elements by viewport id: the three MPR views and the 3D view. */
export type ViewportElements = MutableRefObject<Record<string, HTMLDivElement | null>>;
