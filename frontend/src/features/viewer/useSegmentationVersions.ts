// The segmentation's versions (who saved what, when): the base of the next save, and the one shown.
import { useCallback, useEffect, useState } from 'react';
import type { Api } from '../api/client';
import { ApiError } from '../api/client';
import { latestWithResult, sortVersions, type SegVersion } from '../editing/versions';

export function useSegmentationVersions(api: Api, studyUid: string, overlayReady: boolean) {
  const [versions, setVersions] = useState<SegVersion[] | null>(null);
  const [versionsProblem, setVersionsProblem] = useState<string | null>(null);
  const [shownVersion, setShownVersion] = useState<number | null>(null);

  const loadVersions = useCallback(async () => {
    try {
      const list = sortVersions(await api.segmentationVersions(studyUid));
      setVersions(list);
      setVersionsProblem(null);
      return list;
    } catch (e) {
      const status = e instanceof ApiError ? e.status : 0;
      setVersions(null);
      setVersionsProblem(status === 404 || status === 405 ? 'This server keeps no segmentation versions yet: edits cannot be saved.' : (e as Error).message);
      return null;
    }
  }, [api, studyUid]);

  useEffect(() => {
    if (!overlayReady) return;
    void loadVersions().then((list) => {
      const latest = list && latestWithResult(list); // what the default GET …/segmentation showed
      if (latest) setShownVersion((v) => v ?? latest.version);
    });
  }, [overlayReady, loadVersions]);

  return { versions, versionsProblem, shownVersion, setShownVersion, loadVersions };
}
