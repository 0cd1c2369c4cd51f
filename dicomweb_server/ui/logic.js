// The web application's own logic, without the page: DICOM JSON values, queries, the
// Server-Sent Events wire format, PKCE, STOW-RS outcomes, window/level. Unit-tested with
// Node's test runner (tests/unit/ui/logic.test.mjs).

export const TAG = {
  patientName: "00100010",
  patientId: "00100020",
  birthDate: "00100030",
  sex: "00100040",
  studyUid: "0020000D",
  studyDate: "00080020",
  studyTime: "00080030",
  accession: "00080050",
  modalities: "00080061",
  studyDescription: "00081030",
  studyId: "00200010",
  referring: "00080090",
  seriesCount: "00201206",
  studyInstances: "00201208",
  seriesUid: "0020000E",
  modality: "00080060",
  seriesNumber: "00200011",
  seriesDescription: "0008103E",
  seriesInstances: "00201209",
  sopUid: "00080018",
  sopClass: "00080016",
  instanceNumber: "00200013",
  frames: "00280008",
  windowCenter: "00281050",
  windowWidth: "00281051",
  state: "00741000",
  transaction: "00081195",
  label: "00741204",
  priority: "00741200",
  worklistLabel: "00741202",
  stationName: "00404025",
  start: "00404005",
  failedSops: "00081198",
  referencedSops: "00081199",
  failureReason: "00081197",
  warningReason: "00081196",
  errorComment: "00000902",
};

/** The values of one attribute of a DICOM JSON dataset (PS3.18 F.2), [] when absent. */
export function values(dataset, tag) {
  const element = dataset && dataset[tag];
  return element && Array.isArray(element.Value) ? element.Value : [];
}

/** An attribute as text: person names by their alphabetic group, several values joined. */
export function text(dataset, tag) {
  return values(dataset, tag)
    .map((v) => (v !== null && typeof v === "object" ? v.Alphabetic || "" : String(v)))
    .join(", ");
}

/** The first value, or "". */
export function first(dataset, tag) {
  const found = values(dataset, tag);
  return found.length ? found[0] : "";
}

/** A date input's value (YYYY-MM-DD) as a DICOM DA (YYYYMMDD). */
export function dicomDate(value) {
  return value ? String(value).replaceAll("-", "") : "";
}

/** A DICOM DA as YYYY-MM-DD, anything else as it is. */
export function showDate(value) {
  const found = /^(\d{4})(\d{2})(\d{2})$/.exec(value || "");
  return found ? `${found[1]}-${found[2]}-${found[3]}` : value || "";
}

/** The study list's QIDO-RS query (PS3.18 10.6.1.2): the search fields (empty ones left
 * out), a date range, any other attribute as `keyword=value`, one row more than a page
 * (to know whether more follow). */
export function studyQuery(fields, offset, page) {
  const params = new URLSearchParams();
  for (const name of ["PatientName", "PatientID", "ModalitiesInStudy", "AccessionNumber", "StudyDescription"]) {
    const value = (fields[name] || "").trim();
    if (value) params.set(name, value);
  }
  const from = dicomDate(fields.from), to = dicomDate(fields.to);
  if (from || to) params.set("StudyDate", from === to ? from : `${from}-${to}`);
  const other = (fields.other || "").trim();
  if (other) {
    for (const pair of other.split(/[&\s]+/)) {
      const at = pair.indexOf("=");
      if (at > 0) params.append(pair.slice(0, at), pair.slice(at + 1));
    }
  }
  params.set("includefield", "StudyDescription");
  params.set("fuzzymatching", "true");
  params.set("limit", String(page + 1));
  params.set("offset", String(offset));
  return params;
}

/** The search keys of a study query without its paging (for counting the matches). */
export function matchingKeys(params) {
  const keys = new URLSearchParams();
  for (const [name, value] of params) {
    if (!["limit", "offset", "includefield", "orderby"].includes(name)) keys.append(name, value);
  }
  return keys;
}

/** Server-Sent Events (HTML Living Standard 9.2.6): the events complete in `buffer` and
 * what is left of it. Comments and unknown fields are skipped. */
export function parseEvents(buffer) {
  const events = [];
  const normalised = buffer.replace(/\r\n?/g, "\n");
  const blocks = normalised.split("\n\n");
  const rest = blocks.pop();
  for (const block of blocks) {
    const event = { id: null, event: "message", data: "" };
    const data = [];
    for (const line of block.split("\n")) {
      if (!line || line.startsWith(":")) continue;
      const at = line.indexOf(":");
      const field = at < 0 ? line : line.slice(0, at);
      let value = at < 0 ? "" : line.slice(at + 1);
      if (value.startsWith(" ")) value = value.slice(1);
      if (field === "data") data.push(value);
      else if (field === "id") event.id = value;
      else if (field === "event") event.event = value;
    }
    if (data.length || event.id !== null) {
      event.data = data.join("\n");
      events.push(event);
    }
  }
  return { events, rest };
}

/** RFC 4648 5 (base64url, no padding) of bytes. */
export function base64url(bytes) {
  let binary = "";
  for (const byte of bytes) binary += String.fromCharCode(byte);
  return btoa(binary).replaceAll("+", "-").replaceAll("/", "_").replace(/=+$/, "");
}

/** A random string of `size` bytes, base64url. */
export function randomText(size = 32) {
  return base64url(crypto.getRandomValues(new Uint8Array(size)));
}

/** RFC 7636 4.1-4.2: a code verifier and its S256 challenge. */
export async function pkcePair() {
  const verifier = randomText(48);
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(verifier));
  return { verifier, challenge: base64url(new Uint8Array(digest)) };
}

/** What STOW-RS answered about one file: ok, and the reason when not (PS3.18 10.5.3: the
 * Failed SOP Sequence's Failure Reason, the Warning Reason, or the error body). */
export function stowOutcome(status, body) {
  const response = Array.isArray(body) ? body[0] : body;
  if (status === 200) return { ok: true, reason: "" };
  const failed = values(response, TAG.failedSops)[0];
  if (failed) {
    const code = first(failed, TAG.failureReason);
    const comment = first(failed, TAG.errorComment) || first(response, TAG.errorComment);
    return { ok: false, reason: `${comment || failureText(code)} (failure reason ${hex(code)})` };
  }
  const stored = values(response, TAG.referencedSops)[0];
  if (status === 202 && stored) {
    const code = first(stored, TAG.warningReason);
    return { ok: true, reason: code ? `stored with warning ${hex(code)}` : "stored with a warning" };
  }
  if (response && typeof response.error === "string") return { ok: false, reason: response.error };
  return { ok: false, reason: `the server answered ${status}` };
}

/** The meaning of a STOW-RS failure reason (PS3.4 Table B.2-1, PS3.18 Table I.2-1). */
export function failureText(code) {
  const known = {
    0x0110: "processing failure",
    0x0111: "duplicate SOP instance",
    0x0124: "not authorized",
    0xa700: "out of resources",
    0xa900: "the data set does not match the SOP class",
    0xc000: "cannot understand",
    0xc122: "the transfer syntax is not supported",
  };
  return known[Number(code)] || "refused";
}

/** A status code as DICOM writes it (0xC000). */
export function hex(code) {
  const number = Number(code);
  return Number.isInteger(number) ? `0x${number.toString(16).toUpperCase().padStart(4, "0")}` : String(code);
}

/** Whether a caller with `scopes` may do what needs `scope`. */
export function can(scopes, scope) {
  return Array.isArray(scopes) && scopes.includes(scope);
}

/** Window presets of the quick viewer (center, width; null: the object's own). */
export const PRESETS = [
  { name: "Default", center: null, width: null },
  { name: "Soft tissue", center: 40, width: 400 },
  { name: "Lung", center: -600, width: 1500 },
  { name: "Bone", center: 300, width: 1500 },
  { name: "Brain", center: 40, width: 80 },
];

/** A drag of (dx, dy) pixels moves the window: right widens, down raises the center. */
export function dragWindow(center, width, dx, dy, step = 4) {
  return { center: Math.round(center + dy * step), width: Math.max(1, Math.round(width + dx * step)) };
}

/** The `window` parameter of a rendered request (PS3.18 8.3.5.1.4). */
export function windowParameter(center, width) {
  return center === null || width === null ? "" : `${center},${width},linear`;
}

/** A byte count for people. */
export function formatBytes(count) {
  const units = ["B", "KB", "MB", "GB", "TB"];
  let value = Number(count) || 0, unit = 0;
  while (value >= 1024 && unit < units.length - 1) { value /= 1024; unit += 1; }
  return `${unit ? value.toFixed(1) : value} ${units[unit]}`;
}

/** The one part of a STOW-RS request for one file (PS3.18 10.5.1.2): what goes before
 * and after the file's bytes. */
export function stowFrame(boundary) {
  return {
    head: `--${boundary}\r\nContent-Type: application/dicom\r\n\r\n`,
    tail: `\r\n--${boundary}--\r\n`,
    type: `multipart/related; type="application/dicom"; boundary=${boundary}`,
  };
}

/** A DICOM DT for now (the workitem times). */
export function dicomDateTime(date) {
  const pad = (n) => String(n).padStart(2, "0");
  return `${date.getFullYear()}${pad(date.getMonth() + 1)}${pad(date.getDate())}` +
    `${pad(date.getHours())}${pad(date.getMinutes())}${pad(date.getSeconds())}`;
}
