import { describe, expect, it } from 'vitest';
import { SseParser, stageLabel } from './sse';
import { progressOf, formatBytes, contentTypeFor } from '../upload/uploadXhr';
import { parseRoute } from '../../app/route';
import { applyPreset, PRESETS } from '../viewer/presets';

describe('SseParser', () => {
  it('parses events split across chunks, CRLF and multi-line data', () => {
    const parser = new SseParser();
    expect(parser.push('event: progress\r\ndata: {"state":')).toEqual([]);
    const events = parser.push('"running"}\r\n\r\n: keep-alive\n\nevent: progress\ndata: a\ndata: b\n\n');
    expect(events).toEqual([
      { event: 'progress', data: '{"state":"running"}' },
      { event: 'progress', data: 'a\nb' },
    ]);
  });
});

describe('progress', () => {
  it('labels job stages', () => {
    expect(stageLabel({ state: 'running', stage: 'inference', progress: 0.456 })).toBe('inference · 46%');
    expect(stageLabel({ state: 'queued', stage: 'queued', progress: 0 })).toBe('Waiting in the queue');
    expect(stageLabel({ state: 'failed', stage: 'fetch', progress: 0.1 })).toBe('Failed');
  });
  it('computes upload progress fractions', () => {
    expect(progressOf(50, 200).fraction).toBe(0.25);
    expect(progressOf(10, 0).fraction).toBe(0);
    expect(progressOf(300, 200).fraction).toBe(1);
    expect(formatBytes(1536)).toBe('1.5 KiB');
    expect(contentTypeFor('study.ZIP')).toBe('application/zip');
    expect(contentTypeFor('IM0001')).toBe('application/dicom');
  });
});

describe('routes and presets', () => {
  it('parses hash routes', () => {
    expect(parseRoute('#/studies/1.2.840.5')).toEqual({ name: 'study', uid: '1.2.840.5' });
    expect(parseRoute('#/upload')).toEqual({ name: 'upload' });
    expect(parseRoute('')).toEqual({ name: 'worklist' });
    expect(parseRoute('#/studies/<script>')).toEqual({ name: 'worklist' });
  });
  it('applies window presets relative to the base range', () => {
    expect(applyPreset({ lower: 0, upper: 100 }, PRESETS[0])).toEqual({ lower: 0, upper: 100 });
    expect(applyPreset({ lower: 0, upper: 100 }, PRESETS.find((p) => p.id === 'contrast')!)).toEqual({ lower: 30, upper: 70 });
  });
});
