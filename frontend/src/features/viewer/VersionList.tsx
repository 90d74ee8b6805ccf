import { describeVersion, hasResult, latestVersion, latestWithResult, type SegVersion } from '../editing/versions';

/** The segmentation's versions: who saved which, its voxel counts, and a button to show it. */
export function VersionList(props: {
  versions: SegVersion[];
  shownVersion: number | null;
  busy: boolean; // a save is running
  onShow: (version: number) => void;
}) {
  const { versions, shownVersion, busy } = props;
  const latest = latestVersion(versions);
  const latestDone = latestWithResult(versions);
  return (
    <section className="versions" aria-label="Segmentation versions">
      <h3>Versions</h3>
      <ul>
        {versions.map((v) => (
          <li key={v.version} data-version={v.version} data-voxels={JSON.stringify(v.voxel_counts)}>
            <button
              className={`link ${v.version === shownVersion ? 'active' : ''}`}
              disabled={busy || v.version === shownVersion || !hasResult(v)}
              onClick={() => props.onShow(v.version)}
              title="Show this version"
            >
              {describeVersion(v)}
            </button>
            {v.version === latest?.version && <span className="badge ok">latest</span>}
            {v.voxel_counts && (
              <div className="muted small">
                voxels {Object.entries(v.voxel_counts).map(([k, n]) => `${k}: ${n}`).join(' · ')}
              </div>
            )}
          </li>
        ))}
      </ul>
      {shownVersion !== null && latestDone && shownVersion !== latestDone.version && (
        <p className="muted small">Showing v{shownVersion}; the measurements are those of v{latestDone.version}.</p>
      )}
    </section>
  );
}
