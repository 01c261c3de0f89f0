/**
 * Character normalisation shared by the tokenizer and the knowledge matcher, so that a concept name
 * matches exactly where the tokenizer sees the same characters. It maps one UTF-16 code unit to one
 * code unit, so offsets into normalised text are offsets into the original.
 */
export function normalizeCodeUnit(code: number): number {
  // Full-width ASCII variants (U+FF01..U+FF5E) to ASCII.
  if (code >= 0xff01 && code <= 0xff5e) code -= 0xfee0;
  // Ideographic space to ASCII space.
  else if (code === 0x3000) code = 0x20;
  // bert-base-chinese is uncased.
  if (code >= 0x41 && code <= 0x5a) code += 0x20;
  return code;
}

export function normalizeText(text: string): string {
  let out = '';
  for (let i = 0; i < text.length; i++) out += String.fromCharCode(normalizeCodeUnit(text.charCodeAt(i)));
  return out;
}
