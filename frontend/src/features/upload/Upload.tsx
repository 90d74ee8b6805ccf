import { useState, type DragEvent } from 'react';
import type { Api } from '../api/client';
import { JobProgress } from '../jobs/JobProgress';
import { formatBytes, uploadStudy, uploadStudyWhenAdmitted, type UploadProgress } from './uploadXhr';

export function Upload({ api }: { api: Api }) {
  const [files, setFiles] = useState<File[]>([]);
  const [progress, setProgress] = useState<UploadProgress | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [waiting, setWaiting] = useState<number | null>(null);
  const [result, setResult] = useState<{ studyUid: string; jobId: string | null; created: boolean } | null>(null);
  const [over, setOver] = useState(false);

  const drop = (event: DragEvent) => {
    event.preventDefault();
    setOver(false);
    setFiles(Array.from(event.dataTransfer.files));
  };
  const send = async () => {
    setError(null);
    setResult(null);
    try {
      const answer = await uploadStudyWhenAdmitted(
        () => uploadStudy(api.session, files, setProgress),
        (seconds) => setWaiting(seconds),
      );
      setWaiting(null);
      if (answer.status === 401) {
        api.session.signOut('Your session has expired. Please sign in again.');
        return;
      }
      if (answer.status >= 400) {
        setError(`The upload was refused (${answer.status}): ${answer.body?.detail ?? answer.body?.error ?? 'unknown error'}`);
        return;
      }
      setResult({ studyUid: answer.body.study.study_instance_uid, jobId: answer.body.job?.id ?? null, created: answer.body.created });
    } catch (e) {
      setWaiting(null);
      setError((e as Error).message);
    }
  };
  const total = files.reduce((n, f) => n + f.size, 0);
  return (
    <div className="upload">
      <h2>Upload a study</h2>
      <div
        className={`dropzone${over ? ' over' : ''}`}
        onDragOver={(e) => {
          e.preventDefault();
          setOver(true);
        }}
        onDragLeave={() => setOver(false)}
        onDrop={drop}
      >
        <p>Drop DICOM files or a zip of one study here, or</p>
        <input type="file" multiple accept=".dcm,.zip,application/dicom,application/zip" onChange={(e) => setFiles(Array.from(e.target.files ?? []))} />
        {files.length > 0 && <p>{files.length} file(s), {formatBytes(total)}</p>}
      </div>
      <button disabled={!files.length} onClick={send}>Upload</button>
      {progress && (
        <div>
          <progress max={1} value={progress.fraction} /> {Math.round(progress.fraction * 100)}% ({formatBytes(progress.loaded)} of {formatBytes(progress.total)})
        </div>
      )}
      {waiting !== null && (
        <div className="notice" role="status">The server is storing other uploads; sending again in {waiting} s.</div>
      )}
      {error && <div className="error" role="alert">{error}</div>}
      {result && (
        <div className="notice">
          {result.created ? 'Study received.' : 'This study was already uploaded.'} <a href={`#/studies/${result.studyUid}`}>Open it</a>
          {result.jobId && <JobProgress api={api} jobId={result.jobId} />}
        </div>
      )}
    </div>
  );
}
