import { useCallback, useEffect, useState } from 'react';
import type { Api } from '../api/client';
import { ApiError } from '../api/client';
import { formatWhen } from '../editing/versions';
import {
  SECTIONS,
  SECTION_TITLES,
  afterSave,
  canAddAddendum,
  canAddScreenshot,
  canEditReport,
  canSignReport,
  dirtySections,
  draftProblem,
  setDraft,
  type Drafts,
  type Report,
  type Section,
  type ReportVersion,
} from './report';

/** The study's report: sections (editable by radiologists and admins), screenshots, PDF, sign-off. */
export function ReportPanel({
  api,
  studyUid,
  role,
  captureViewports,
}: {
  api: Api;
  studyUid: string;
  role: string | null;
  captureViewports: () => Promise<Blob>;
}) {
  const [report, setReport] = useState<Report | null>(null);
  const [versions, setVersions] = useState<ReportVersion[]>([]);
  const [drafts, setDrafts] = useState<Drafts>({});
  const [busy, setBusy] = useState<string | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [notice, setNotice] = useState<string | null>(null);
  const [addendum, setAddendum] = useState('');
  const [diff, setDiff] = useState<{ section: string; diff: string }[] | null>(null);

  const load = useCallback(async () => {
    try {
      const r = await api.report(studyUid);
      setReport(r);
      setError(null);
      api.reportVersions(studyUid).then((v) => setVersions(v.versions), () => setVersions([]));
    } catch (e) {
      setError(e instanceof ApiError && e.status === 404 ? 'This study has no report yet (it is drafted when the segmentation finishes).' : (e as Error).message);
    }
  }, [api, studyUid]);

  useEffect(() => {
    void load();
  }, [load]);

  const run = async (label: string, action: () => Promise<string | null | void>) => {
    setBusy(label);
    setError(null);
    setNotice(null);
    try {
      const message = await action();
      if (message) setNotice(message);
    } catch (e) {
      setError(e instanceof ApiError && e.status === 409 ? `${e.message} (reloaded)` : (e as Error).message);
      if (e instanceof ApiError && e.status === 409) await load();
    } finally {
      setBusy(null);
    }
  };

  const edit = canEditReport(role, report);
  const sign = canSignReport(role, report);
  const shot = canAddScreenshot(role, report);
  const addend = canAddAddendum(role, report);
  const dirty = dirtySections(drafts);

  const saveSections = () =>
    run('Saving…', async () => {
      const problem = draftProblem(drafts);
      if (problem) throw new Error(problem);
      let latest = report!;
      for (const section of dirty) latest = await api.editReportSection(studyUid, section, drafts[section]!);
      setReport(latest);
      setDrafts(afterSave(drafts, latest));
      api.reportVersions(studyUid).then((v) => setVersions(v.versions), () => undefined);
      return `Saved as version ${latest.version}.`;
    });

  const keepAsIs = (section: Section) =>
    run('Saving…', async () => {
      const latest = await api.editReportSection(studyUid, section, report!.sections[section]);
      setReport(latest);
      api.reportVersions(studyUid).then((v) => setVersions(v.versions), () => undefined);
      return `${SECTION_TITLES[section]} reviewed and kept (version ${latest.version}).`;
    });

  const addScreenshot = () =>
    run('Capturing the viewports…', async () => {
      const png = await captureViewports();
      const updated = await api.addReportScreenshot(studyUid, png, `Viewer: axial, sagittal, coronal and 3D (${new Date().toISOString().slice(0, 16).replace('T', ' ')} UTC)`);
      setReport(updated);
      return `Screenshot added (${updated.screenshots.length} in the report).`;
    });

  const downloadPdf = () =>
    run('Rendering the PDF…', async () => {
      const blob = await api.reportPdf(studyUid);
      const url = URL.createObjectURL(blob);
      const a = document.createElement('a');
      a.href = url;
      a.download = `report-${studyUid}.pdf`;
      document.body.appendChild(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(url), 60_000);
      return `PDF downloaded (${Math.round(blob.size / 1024)} KiB).`;
    });

  const signReport = () =>
    run('Signing…', async () => {
      if (dirty.length) throw new Error('Save or discard the unsaved sections before signing.');
      const signed = await api.signReport(studyUid);
      setReport(signed);
      api.reportVersions(studyUid).then((v) => setVersions(v.versions), () => undefined);
      return `Signed by ${signed.signature?.signed_by ?? 'you'}.`;
    });

  const addAddendum = () =>
    run('Adding the addendum…', async () => {
      if (!addendum.trim()) throw new Error('The addendum is empty.');
      const updated = await api.addReportAddendum(studyUid, addendum.trim());
      setReport(updated);
      setAddendum('');
      return `Addendum added (version ${updated.version}).`;
    });

  const showDiff = () =>
    run('Comparing…', async () => {
      const answer = await api.reportDiff(studyUid, 1, report!.version);
      const changed = answer.sections.filter((x) => x.changed);
      setDiff(changed);
      return changed.length ? null : 'No section changed since the first version.';
    });

  if (!report) {
    return (
      <section className="report" aria-label="Report">
        <h3>Report</h3>
        {error ? <div className="error" role="alert">{error}</div> : <p className="muted">Loading the report…</p>}
      </section>
    );
  }

  return (
    <section className="report" aria-label="Report" data-report-status={report.status} data-report-version={report.version}>
      <h3>
        Report <span className={`badge ${report.status === 'final' ? 'ok' : 'busy'}`}>{report.status === 'final' ? 'signed' : 'draft'}</span>{' '}
        <span className="muted small">v{report.version}</span>
        {report.segmentation && <span className="muted small"> · describes segmentation v{report.segmentation.version}</span>}
      </h3>
      {report.ai_drafted && report.status === 'draft' && (
        <p className="muted small">Drafted by the AI from the measurements: check every section before signing.</p>
      )}
      {report.signature && (
        <p className="small">
          Signed by <strong>{report.signature.signed_by}</strong> ({report.signature.role}) {formatWhen(report.signature.signed_at)}
        </p>
      )}
      {SECTIONS.map((section) => (
        <label key={section} className="report-section">
          <span>
            {SECTION_TITLES[section]}
            {report.ai_sections?.[section] && <span className="muted small"> · AI text</span>}
            {drafts[section] !== undefined && <span className="small"> · edited</span>}
            {report.review_sections?.includes(section) && (
              <span className="error small" data-review={section}>
                {' '}
                · numbers changed with segmentation v{report.segmentation?.version ?? '?'}: review
                {edit.allowed && drafts[section] === undefined && (
                  <button type="button" className="small" onClick={() => void keepAsIs(section)} disabled={!!busy}>
                    Keep as is
                  </button>
                )}
              </span>
            )}
          </span>
          <textarea
            name={section}
            rows={section === 'findings' ? 6 : 3}
            value={drafts[section] ?? report.sections[section]}
            readOnly={!edit.allowed}
            onChange={(e) => setDrafts(setDraft(drafts, report, section, e.target.value))}
          />
        </label>
      ))}
      {!edit.allowed && <p className="muted small">{edit.reason}</p>}
      <div className="group report-actions">
        {edit.allowed && (
          <>
            <button onClick={() => void saveSections()} disabled={!dirty.length || !!busy} data-action="save-report">
              Save sections
            </button>
            <button onClick={() => setDrafts({})} disabled={!dirty.length || !!busy}>
              Discard
            </button>
          </>
        )}
        <button onClick={() => void addScreenshot()} disabled={!shot.allowed || !!busy} title={shot.reason ?? undefined} data-action="add-screenshot">
          Add screenshot of the viewports
        </button>
        <button onClick={() => void downloadPdf()} disabled={!!busy} data-action="download-pdf">
          Download PDF
        </button>
        <button onClick={() => void signReport()} disabled={!sign.allowed || !!busy} title={sign.reason ?? undefined} data-action="sign-report">
          Sign
        </button>
      </div>
      {!sign.allowed && report.status === 'draft' && <p className="muted small" data-sign-reason>{sign.reason}</p>}
      {busy && <p className="muted small" role="status">{busy}</p>}
      {notice && <p className="notice small" role="status" data-report-notice>{notice}</p>}
      {error && <div className="error small" role="alert">{error}</div>}
      {report.addenda.length > 0 && (
        <div className="small" aria-label="Addenda">
          <strong>Addenda</strong>
          {report.addenda.map((a) => (
            <p key={a.version}>
              {a.text} <span className="muted">— {a.author}, {formatWhen(a.created_at)}</span>
            </p>
          ))}
        </div>
      )}
      {addend.allowed && (
        <label className="report-section">
          <span>Addendum</span>
          <textarea name="addendum" rows={2} value={addendum} onChange={(e) => setAddendum(e.target.value)} />
          <button onClick={() => void addAddendum()} disabled={!addendum.trim() || !!busy}>
            Add addendum
          </button>
        </label>
      )}
      {report.screenshots.length > 0 && (
        <p className="small" data-screenshots={report.screenshots.length}>
          {report.screenshots.length} screenshot{report.screenshots.length > 1 ? 's' : ''} attached.
        </p>
      )}
      {versions.length > 0 && (
        <details className="small">
          <summary>History ({versions.length} versions)</summary>
          <ul>
            {[...versions].reverse().map((v) => (
              <li key={v.version}>
                v{v.version} · {v.action} · {v.author ?? 'system'} · {formatWhen(v.created_at)}
              </li>
            ))}
          </ul>
          {report.version > 1 && (
            <button className="link" onClick={() => void showDiff()} disabled={!!busy}>
              Changes since v1
            </button>
          )}
          {diff?.map((d) => (
            <div key={d.section}>
              <strong>{d.section}</strong>
              <pre className="diff">{d.diff}</pre>
            </div>
          ))}
        </details>
      )}
    </section>
  );
}
