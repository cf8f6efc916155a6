import type { BuildStatus } from '../../../model/build.js';
import { escapeHtml } from './html.js';

const COLOURS: Record<string, string> = {
  passing: '#2da44e', failing: '#cf222e', cancelled: '#6e7781', abandoned: '#bc4c00', running: '#0969da', queued: '#6e7781', 'no builds': '#6e7781',
};

/** The badge's word for a service's last build (the same words as the pages: never colour alone). */
export function badgeWord(status: BuildStatus | undefined): string {
  if (!status) return 'no builds';
  return ({ succeeded: 'passing', failed: 'failing', cancelled: 'cancelled', abandoned: 'abandoned', running: 'running', queued: 'queued' } as const)[status];
}

/** Width of text in 11px Verdana, near enough: the badge only needs its boxes to fit. */
function textWidth(text: string): number {
  let width = 0;
  for (const ch of text) width += /[mwMW@]/.test(ch) ? 10 : /[A-Z0-9#%&]/.test(ch) ? 8 : /[fijlrt.,:;'!|() -]/.test(ch) ? 4 : 7;
  return width;
}

/** A flat two-part SVG badge: label on grey, the word on its colour; title and aria-label for screen readers. */
export function badgeSvg(label: string, word: string): string {
  const shownLabel = label.length > 40 ? `${label.slice(0, 39)}…` : label;
  const lw = textWidth(shownLabel) + 12;
  const ww = textWidth(word) + 12;
  const colour = COLOURS[word] ?? '#6e7781';
  const l = escapeHtml(shownLabel);
  const w = escapeHtml(word);
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${lw + ww}" height="20" role="img" aria-label="${l}: ${w}">
<title>${l}: ${w}</title>
<linearGradient id="s" x2="0" y2="100%"><stop offset="0" stop-color="#bbb" stop-opacity=".1"/><stop offset="1" stop-opacity=".1"/></linearGradient>
<clipPath id="r"><rect width="${lw + ww}" height="20" rx="3" fill="#fff"/></clipPath>
<g clip-path="url(#r)"><rect width="${lw}" height="20" fill="#555"/><rect x="${lw}" width="${ww}" height="20" fill="${colour}"/><rect width="${lw + ww}" height="20" fill="url(#s)"/></g>
<g fill="#fff" text-anchor="middle" font-family="Verdana,Geneva,DejaVu Sans,sans-serif" font-size="11">
<text x="${lw / 2}" y="15" fill="#010101" fill-opacity=".3">${l}</text><text x="${lw / 2}" y="14">${l}</text>
<text x="${lw + ww / 2}" y="15" fill="#010101" fill-opacity=".3">${w}</text><text x="${lw + ww / 2}" y="14">${w}</text>
</g>
</svg>`;
}
