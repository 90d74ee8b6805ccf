import type { Segment } from './dicomSeg';
import type { Editing } from './useEditing';
import type { Saving } from './useSaveSegmentation';

/** "Edit": the tool, the painted segment, the brush radius, undo and "Save as new version" (for the
 * roles that may edit), the save's progress and problems. */
export function EditPanel(props: {
  mayEdit: boolean;
  role: string | null;
  editing: Editing;
  segments: Segment[];
  saving: Saving | null;
  saveError: string | null;
  versionsProblem: string | null;
  onSave: () => void;
}) {
  const { mayEdit, role, editing, segments, saving, saveError, versionsProblem } = props;
  const { mode, activeSegment, brushMm, strokes } = editing;
  return (
    <section className="editing" aria-label="Edit the segmentation">
      <h3>Edit</h3>
      {!mayEdit ? (
        <p className="muted small">{role ? `Your role (${role}) may view but not edit segmentations.` : 'Checking your role…'}</p>
      ) : (
        <>
          <div className="group" role="group" aria-label="Tool">
            {(['navigate', 'brush', 'eraser'] as const).map((m) => (
              <button key={m} className={mode === m ? 'active' : ''} onClick={() => editing.chooseMode(m)} data-mode={m}>
                {m === 'navigate' ? 'Window/level' : m === 'brush' ? 'Brush' : 'Eraser'}
              </button>
            ))}
          </div>
          <div className="group" role="group" aria-label="Paint segment">
            {segments.map((s) => (
              <button
                key={s.number}
                className={activeSegment === s.number ? 'active' : ''}
                onClick={() => editing.chooseSegment(s.number)}
                data-paint-segment={s.number}
                title={s.label}
              >
                <span className="swatch" style={{ background: `rgb(${s.rgb.join(',')})` }} />
                {s.number}
              </button>
            ))}
          </div>
          <label className="small">
            Brush radius {brushMm} mm{' '}
            <input type="range" min={1} max={20} value={brushMm} aria-label="Brush radius" onChange={(e) => editing.chooseBrush(Number(e.target.value))} />
          </label>
          <div className="group">
            <button onClick={editing.undo} disabled={!strokes || !!saving}>Undo</button>
            <button
              onClick={props.onSave}
              disabled={!strokes || !!saving || !!versionsProblem}
              data-action="save-segmentation"
              title={versionsProblem ?? undefined}
            >
              Save as new version
            </button>
          </div>
          {strokes > 0 && !saving && <p className="muted small">{strokes} unsaved edit{strokes > 1 ? 's' : ''}.</p>}
        </>
      )}
      {saving && (
        <div className="notice small" role="status" data-saving="true">
          {saving.message}
          {saving.job && <progress max={1} value={saving.job.state === 'succeeded' ? 1 : saving.job.progress} />}
        </div>
      )}
      {saveError && <div className="error small" role="alert">{saveError}</div>}
      {versionsProblem && <p className="muted small">{versionsProblem}</p>}
    </section>
  );
}
