// "Save as new version": the edited labelmap encoded and posted on the latest version, the worker's
// job followed (DICOM-SEG, measurements), then the new version shown; each step timed.
import { useState } from 'react';
import { cache } from '@cornerstonejs/core';
import type { Api, Job } from '../api/client';
import { ApiError } from '../api/client';
import { geometryOf, newVersionBody } from '../editing/labelmap';
import { latestVersion, saveErrorMessage, type SegVersion } from '../editing/versions';
import { followJob, stageLabel } from '../jobs/sse';
import { LABELMAP_ID, type LabelVolume } from './constants';
import type { ViewerTimings } from './timings';

export interface Saving {
  message: string;
  job?: Job;
}

export function useSaveSegmentation(options: {
  api: Api;
  studyUid: string;
  t1cUid: string | undefined;
  versions: SegVersion[] | null;
  shownVersion: number | null;
  loadVersions: () => Promise<SegVersion[] | null>;
  reloadVersion: (version: number) => Promise<void>;
  timings: ViewerTimings;
}) {
  const { api, studyUid, t1cUid, versions, shownVersion, loadVersions, reloadVersion, timings } = options;
  const [saving, setSaving] = useState<Saving | null>(null);
  const [saveError, setSaveError] = useState<string | null>(null);
  const [measurementsKey, setMeasurementsKey] = useState(0);

  const save = async () => {
    const labelmap = cache.getVolume(LABELMAP_ID) as LabelVolume | undefined;
    if (!labelmap || !t1cUid) return;
    setSaveError(null);
    setSaving({ message: 'Preparing the labelmap…' });
    const steps: Record<string, number> = { startedAt: Date.now() };
    let mark = performance.now();
    const step = (name: string) => {
      const now = performance.now();
      steps[name] = Math.round(now - mark);
      mark = now;
    };
    try {
      const list = versions ?? (await loadVersions());
      const base = (list && latestVersion(list)?.version) ?? shownVersion ?? 1;
      const body = await newVersionBody(base, t1cUid, geometryOf(labelmap), labelmap.voxelManager.getCompleteScalarDataArray());
      step('encode');
      setSaving({ message: 'Sending…' });
      let answer: { version: number; job_id: string };
      try {
        answer = await api.saveSegmentation(studyUid, body);
      } catch (e) {
        if (e instanceof ApiError && e.status === 409) await loadVersions(); // the newer version appears in the list
        if (e instanceof ApiError) throw new Error(saveErrorMessage(e.status, e.message));
        throw e;
      }
      step('post');
      setSaving({ message: `Version ${answer.version}: writing the DICOM-SEG and recomputing the measurements…` });
      const final = await followJob(api, answer.job_id, (j) => setSaving({ message: `Version ${answer.version}: ${stageLabel(j)}`, job: j }));
      step('job');
      if (final.state === 'failed') throw new Error(`Saving version ${answer.version} failed: ${final.error ?? 'no reason given'}`);
      await loadVersions();
      step('versions');
      await reloadVersion(answer.version);
      step('reload');
      setMeasurementsKey((k) => k + 1);
      setSaving(null);
      steps.endedAt = Date.now();
      timings.saved(steps);
    } catch (e) {
      setSaving(null);
      setSaveError((e as Error).message);
    }
  };

  return { saving, saveError, setSaveError, measurementsKey, save };
}
