import { useEffect, useState } from 'react';
import type { Study } from '../api/client';
import { missingFrames } from './cornerstone';
import { describeMissing, type MissingFrame } from './frameRetry';

/** The frames of this study that could not be loaded after all tries, by series and instance number:
 * those slices are black in the views (and a line in the reformats). */
export function MissingFramesNotice({ studyUid, study }: { studyUid: string; study: Study | null }) {
  const [missing, setMissing] = useState<MissingFrame[]>(() => missingFrames.list(studyUid));
  useEffect(() => {
    setMissing(missingFrames.list(studyUid));
    return missingFrames.subscribe(() => setMissing(missingFrames.list(studyUid)));
  }, [studyUid]);
  if (missing.length === 0) return null;
  const label = (uid: string) => {
    const series = study?.series.find((s) => s.series_instance_uid === uid);
    return series ? series.role ?? (series.series_description || undefined) : undefined;
  };
  const described = describeMissing(missing, label);
  return (
    <div className="error" role="alert" data-missing-frames={missing.length}>
      {missing.length === 1 ? 'One slice' : `${missing.length} slices`} could not be loaded after {missing[0].tries} tries and{' '}
      {missing.length === 1 ? 'is' : 'are'} shown black (also as a line in the other views):
      <ul className="missing-frames">
        {described.map((d) => (
          <li key={d.seriesUid} data-series={d.seriesUid}>{d.text}</li>
        ))}
      </ul>
      Reload the page to try again; if it persists, the image store may be unwell.
    </div>
  );
}
