// The study's report as the gateway returns it (`GET /api/studies/{uid}/report`, from the reporting
// service), and the editor's state: drafts per section, what the user's role may do and why not.

export const SECTIONS = ['findings', 'impression', 'diagnosis', 'recommendations'] as const;
export type Section = (typeof SECTIONS)[number];

export const SECTION_TITLES: Record<Section, string> = {
  findings: 'Findings',
  impression: 'Impression',
  diagnosis: 'Diagnosis',
  recommendations: 'Recommendations',
};

export interface Report {
  id: string;
  study_instance_uid: string;
  job_id: string;
  status: 'draft' | 'final';
  version: number;
  created_at: string;
  updated_at: string;
  author: string | null;
  ai_drafted: boolean;
  ai_sections: Record<Section, boolean>;
  sections: Record<Section, string>;
  // sections a person wrote whose numbers changed with a newer segmentation version: reviewed before signing
  review_sections?: Section[];
  segmentation?: { version: number } | null; // the SEG version the report describes
  signature: { signed_by: string; role: string; signed_at: string } | null;
  addenda: { version: number; created_at: string; author: string; text: string }[];
  key_images: string[];
  screenshots: { id: number; position: number; caption: string; author: string | null; created_at: string }[];
  pdf_url: string;
}

export interface ReportVersion {
  version: number;
  created_at: string;
  author: string | null;
  role: string | null;
  action: string;
}

export interface Permission {
  allowed: boolean;
  reason: string | null; // why not, shown to the user
}

const yes: Permission = { allowed: true, reason: null };
const no = (reason: string): Permission => ({ allowed: false, reason });

export function canEditReport(role: string | null | undefined, report: Pick<Report, 'status'> | null): Permission {
  if (!report) return no('No report yet.');
  if (report.status === 'final') return no('The report is signed; it can no longer be edited.');
  if (role !== 'admin' && role !== 'radiologist') return no('Only radiologists and administrators edit reports.');
  return yes;
}

export function canSignReport(
  role: string | null | undefined,
  report: Pick<Report, 'status' | 'signature' | 'review_sections' | 'segmentation'> | null,
): Permission {
  if (!report) return no('No report yet.');
  if (report.status === 'final')
    return no(report.signature ? `Signed by ${report.signature.signed_by} at ${report.signature.signed_at}.` : 'The report is signed.');
  if (role !== 'radiologist') return no('Only a radiologist may sign the report.');
  const review = report.review_sections ?? [];
  if (review.length)
    return no(
      `The numbers changed with segmentation version ${report.segmentation?.version ?? '?'}: review ${review
        .map((s) => SECTION_TITLES[s])
        .join(', ')} (edit, or keep as is) before signing.`,
    );
  return yes;
}

export function canAddScreenshot(role: string | null | undefined, report: Pick<Report, 'status'> | null): Permission {
  if (!report) return no('No report yet.');
  if (report.status === 'final') return no('The report is signed; screenshots can no longer be added.');
  if (role !== 'admin' && role !== 'radiologist' && role !== 'clinician') return no('Your role may not add screenshots.');
  return yes;
}

/** The user's unsaved text per section (only sections that differ from the report). */
export type Drafts = Partial<Record<Section, string>>;

export function setDraft(drafts: Drafts, report: Pick<Report, 'sections'>, section: Section, text: string): Drafts {
  const next = { ...drafts };
  if (text === report.sections[section]) delete next[section];
  else next[section] = text;
  return next;
}

export function dirtySections(drafts: Drafts): Section[] {
  return SECTIONS.filter((s) => drafts[s] !== undefined);
}

/** After a save: drafts the server now holds are dropped, others kept. */
export function afterSave(drafts: Drafts, report: Pick<Report, 'sections'>): Drafts {
  const next: Drafts = {};
  for (const s of dirtySections(drafts)) if (drafts[s] !== report.sections[s]) next[s] = drafts[s];
  return next;
}

/** Sections must not be empty (the reporting service refuses an empty text). */
export function draftProblem(drafts: Drafts): string | null {
  for (const s of dirtySections(drafts)) if (!drafts[s]!.trim()) return `${SECTION_TITLES[s]} may not be empty.`;
  return null;
}

/** Addenda: radiologists, once the report is signed. */
export function canAddAddendum(role: string | null | undefined, report: Pick<Report, 'status'> | null): Permission {
  if (!report) return no('No report yet.');
  if (report.status !== 'final') return no('Addenda are for signed reports; edit the sections instead.');
  if (role !== 'radiologist') return no('Only a radiologist may add an addendum.');
  return yes;
}
