import { VIEW_3D, VIEWPORTS, type ViewportElements } from './constants';
import type { Editing } from './useEditing';
import type { SurfaceState } from './useSurface3d';

/** The three MPR viewports (strokes start and end on them) and the 3D tumour surface. */
export function ViewportGrid(props: {
  elements: ViewportElements;
  editing: Pick<Editing, 'mode' | 'strokeStarted' | 'strokeEnded'>;
  surface: SurfaceState;
}) {
  const { elements, editing, surface } = props;
  return (
    <div className="viewports">
      {VIEWPORTS.map((v) => (
        <div key={v.id} className="viewport-cell">
          <div className="viewport-label">{v.label}</div>
          <div
            className={`viewport ${editing.mode === 'brush' || editing.mode === 'eraser' ? 'editing' : ''}`}
            data-viewport={v.id}
            ref={(el) => void (elements.current[v.id] = el)}
            onContextMenu={(e) => e.preventDefault()}
            onPointerDown={editing.strokeStarted}
            onPointerUp={editing.strokeEnded}
          />
        </div>
      ))}
      <div className="viewport-cell">
        <div className="viewport-label">
          3D tumour surface
          {surface.state === 'building' && ' · building…'}
          {surface.state === 'failed' && ` · failed: ${surface.message}`}
        </div>
        <div
          className="viewport"
          data-viewport={VIEW_3D}
          data-triangles={surface.triangles ?? 0}
          ref={(el) => void (elements.current[VIEW_3D] = el)}
          onContextMenu={(e) => e.preventDefault()}
        />
      </div>
    </div>
  );
}
