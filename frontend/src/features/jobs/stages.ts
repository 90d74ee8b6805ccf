// The one vocabulary of a job's `stage`, in order: the same lists as the backend's
// services/common/glioscope_common/job_stages.py (tests/test_job_stages.py checks that they are equal).
// A job waits as queued / requeued / waiting-retry; the worker then writes fetch, the pipeline's stages,
// outputs and done.
export const WAITING_STAGES = ['queued', 'requeued', 'waiting-retry'] as const;
export const PIPELINE_STAGES = ['coregister', 'resample', 'normalise', 'inference', 'postprocess', 'locate', 'measure', 'key_images'] as const;
export const JOB_STAGES = [...WAITING_STAGES, 'fetch', ...PIPELINE_STAGES, 'outputs', 'done'] as const;

export type JobStage = (typeof JOB_STAGES)[number];

/** The stages a running job goes through (the progress list): neither the waiting ones nor `done`. */
export const WORK_STAGES: readonly string[] = JOB_STAGES.filter((s) => !(WAITING_STAGES as readonly string[]).includes(s) && s !== 'done');

const LABELS: Record<string, string> = {
  queued: 'queued',
  requeued: 'queued again',
  'waiting-retry': 'waiting to retry',
  key_images: 'key images',
};

/** A stage's name for people (`key_images` → "key images"); an unknown one as it came. */
export function stageName(stage: string): string {
  return LABELS[stage] ?? stage;
}

/** Where a stage lies in the progress list: `done` for each stage before the current one, `current` for it. */
export function stageStates(stage: string, succeeded: boolean): Array<{ stage: string; state: 'done' | 'current' | '' }> {
  const current = WORK_STAGES.indexOf(stage);
  const finished = succeeded || stage === 'done';
  return WORK_STAGES.map((s, i) => ({ stage: s, state: finished || (current >= 0 && i < current) ? 'done' : i === current ? 'current' : '' }));
}
