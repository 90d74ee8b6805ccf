import { describe, expect, it } from 'vitest';
import { JOB_STAGES, WORK_STAGES, stageName, stageStates } from './stages';

describe('job stages', () => {
  it('lists the pipeline between fetch and outputs, waiting stages first', () => {
    expect(JOB_STAGES.slice(0, 4)).toEqual(['queued', 'requeued', 'waiting-retry', 'fetch']);
    expect(JOB_STAGES).toContain('coregister');
    expect(JOB_STAGES.at(-1)).toBe('done');
    expect(WORK_STAGES[0]).toBe('fetch');
    expect(WORK_STAGES.at(-1)).toBe('outputs');
  });

  it('marks the stages before the current one as done', () => {
    const states = stageStates('coregister', false);
    expect(states.map((s) => s.state).slice(0, 3)).toEqual(['done', 'current', '']);
    expect(stageStates('done', false).every((s) => s.state === 'done')).toBe(true);
    expect(stageStates('queued', false).every((s) => s.state === '')).toBe(true);
  });

  it('names stages for people', () => {
    expect(stageName('key_images')).toBe('key images');
    expect(stageName('waiting-retry')).toBe('waiting to retry');
    expect(stageName('inference')).toBe('inference');
  });
});
