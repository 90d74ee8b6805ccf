import { describe, expect, it } from 'vitest';
import { afterSave, canAddAddendum, canAddScreenshot, canEditReport, canSignReport, dirtySections, draftProblem, setDraft } from './report';

const report = {
  status: 'draft' as const,
  signature: null,
  sections: { findings: 'A mass.', impression: 'Glioma.', diagnosis: 'Suspected glioma.', recommendations: 'MDT.' },
};

describe('report editor state', () => {
  it('tracks only sections that differ from the report', () => {
    let drafts = setDraft({}, report, 'findings', 'A larger mass.');
    drafts = setDraft(drafts, report, 'impression', 'Glioma.'); // unchanged: not a draft
    expect(dirtySections(drafts)).toEqual(['findings']);
    drafts = setDraft(drafts, report, 'findings', 'A mass.'); // typed back to the original
    expect(dirtySections(drafts)).toEqual([]);
  });

  it('drops saved drafts and keeps the others', () => {
    const drafts = { findings: 'New findings.', impression: 'New impression.' };
    const saved = { sections: { ...report.sections, findings: 'New findings.' } };
    expect(afterSave(drafts, saved)).toEqual({ impression: 'New impression.' });
  });

  it('refuses empty sections', () => {
    expect(draftProblem({ impression: '  ' })).toMatch(/Impression may not be empty/);
    expect(draftProblem({ impression: 'ok' })).toBeNull();
  });

  it('gives each role what the gateway allows, with the reason otherwise', () => {
    expect(canEditReport('radiologist', report).allowed).toBe(true);
    expect(canEditReport('admin', report).allowed).toBe(true);
    expect(canEditReport('clinician', report)).toEqual({ allowed: false, reason: 'Only radiologists and administrators edit reports.' });
    expect(canSignReport('radiologist', report).allowed).toBe(true);
    expect(canSignReport('admin', report).reason).toMatch(/Only a radiologist/);
    const stale = { ...report, review_sections: ['impression' as const], segmentation: { version: 2 } };
    expect(canSignReport('radiologist', stale).allowed).toBe(false);
    expect(canSignReport('radiologist', stale).reason).toMatch(/segmentation version 2: review Impression/);
    expect(canAddScreenshot('clinician', report).allowed).toBe(true);
    expect(canAddScreenshot('researcher', report).allowed).toBe(false);
    const signed = { ...report, status: 'final' as const, signature: { signed_by: 'dr-r', role: 'radiologist', signed_at: '2026-11-25T22:00:00Z' } };
    expect(canEditReport('radiologist', signed).allowed).toBe(false);
    expect(canSignReport('radiologist', signed).reason).toMatch(/Signed by dr-r/);
    expect(canAddScreenshot('radiologist', signed).allowed).toBe(false);
    expect(canEditReport('radiologist', null).allowed).toBe(false);
    expect(canAddAddendum('radiologist', signed).allowed).toBe(true);
    expect(canAddAddendum('radiologist', report).reason).toMatch(/signed reports/);
    expect(canAddAddendum('admin', signed).allowed).toBe(false);
  });
});
