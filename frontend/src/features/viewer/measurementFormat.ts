/**
 * The report's number format, so the viewer and the PDF quote the same figures
 * (services/reporting/glioscope_reporting/reports/formatting.py): volumes in mL, lengths in mm and
 * areas in mm², each with one decimal, rounded as Python's `format(value, '.1f')` rounds.
 */

const DECIMALS = 1;

/**
 * `value` with `decimals` digits after the point, rounded as Python rounds it: from the number's exact
 * binary value, an exact half to the even digit. (`toFixed` also rounds the exact value but takes a
 * half away from zero: 1.25 → "1.3" where the report writes "1.2".)
 */
export function fixed(value: number, decimals: number = DECIMALS): string {
  const rounded = value.toFixed(decimals);
  if (!Number.isFinite(value) || Math.abs(value) >= 1e21) return rounded;
  const exact = Math.abs(value).toFixed(100); // every digit of the binary value (at most 100 places are needed here)
  const cut = exact.indexOf('.') + 1 + decimals;
  if (!/^50*$/.test(exact.slice(cut))) return rounded; // not a half: toFixed is right
  const kept = exact.slice(0, decimals === 0 ? cut - 1 : cut);
  const lastDigit = Number(kept[kept.length - 1]);
  if (lastDigit % 2 === 1) return rounded; // away from zero reaches the even digit
  return (value < 0 ? '-' : '') + kept; // towards zero is the even digit
}

export const ml = (value: number): string => `${fixed(value)} mL`;
export const mm = (value: number): string => `${fixed(value)} mm`;
export const mm2 = (value: number): string => `${fixed(value)} mm²`;
