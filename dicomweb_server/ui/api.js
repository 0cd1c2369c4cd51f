// The app's only way to the server: the public DICOMweb and admin API, with the credential
// the user signed in with. Nothing here knows the server's code.
import { parseEvents } from "./logic.js";

export const ROOT = document.querySelector('meta[name="dicomweb-root"]').content;
const CREDENTIAL = "dicomweb.credential";

/** The credential of this tab: {kind: "api-key" | "oidc" | "share", secret, expires?}. */
export const session = {
  get() {
    try {
      const found = JSON.parse(sessionStorage.getItem(CREDENTIAL) || "null");
      if (found && found.expires && found.expires < Date.now() / 1000) return null;
      return found;
    } catch (_) {
      return null;
    }
  },
  set(credential) { sessionStorage.setItem(CREDENTIAL, JSON.stringify(credential)); },
  clear() { sessionStorage.removeItem(CREDENTIAL); },
};

/** The header that carries the credential: a bearer token (RFC 6750 2.1), which the server
 * takes for keys, OpenID Connect tokens and share sessions alike. */
export function authHeaders() {
  const credential = session.get();
  return credential ? { Authorization: `Bearer ${credential.secret}` } : {};
}

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

/** The reason in an error answer (the server's `{"error": ...}` body), else its status. */
async function reason(answer) {
  let text = `${answer.status} ${answer.statusText}`.trim();
  try {
    const body = await answer.json();
    if (body && typeof body.error === "string") text = body.error;
    else if (Array.isArray(body) && body[0] && body[0]["00000902"]) text = body[0]["00000902"].Value[0];
  } catch (_) { /* not JSON */ }
  return text;
}

/** A request to `path` under the DICOMweb root; the answer, or ApiError with the reason. */
export async function call(path, { method = "GET", accept = "application/dicom+json", headers = {}, body, signal } = {}) {
  let answer;
  try {
    answer = await fetch(ROOT + path, { method, body, signal, headers: { Accept: accept, ...authHeaders(), ...headers } });
  } catch (error) {
    if (error.name === "AbortError") throw error;
    throw new ApiError(0, "the server cannot be reached");
  }
  if (!answer.ok) {
    const error = new ApiError(answer.status, await reason(answer));
    // The credential no longer works (expired, revoked): the app asks for a new one.
    if (answer.status === 401 && path !== "/whoami") {
      window.dispatchEvent(new CustomEvent("dicomweb:unauthenticated", { detail: error.message }));
    }
    throw error;
  }
  return answer;
}

/** The JSON of a request ([] for 204 No Content). */
export async function json(path, options = {}) {
  const answer = await call(path, { accept: "application/json", ...options });
  if (answer.status === 204) return [];
  const text = await answer.text();
  return text ? JSON.parse(text) : null;
}

/** DICOM JSON (PS3.18 F.2) of a search or metadata request. */
export function dicom(path, options = {}) {
  return json(path, { accept: "application/dicom+json", ...options });
}

/** A JSON body. */
export function sendJson(path, method, value, contentType = "application/json") {
  return json(path, { method, body: JSON.stringify(value), headers: { "Content-Type": contentType } });
}

// What images are asked for in (the same each time: the browser's cache varies on it).
export const IMAGE_ACCEPT = "image/jpeg, image/png;q=0.9";

/** An image of the server's (rendered, thumbnail) as an object URL (the credential goes in
 * a header, which an <img> cannot send). */
export async function image(path, signal) {
  const answer = await call(path, { accept: IMAGE_ACCEPT, signal });
  return URL.createObjectURL(await answer.blob());
}

/** Server-Sent Events from `path`, read with fetch (an EventSource cannot send the
 * credential), resumed after a break from the last id; until `signal` aborts. */
export async function events(path, onEvent, signal) {
  let last = null;
  while (!signal.aborted) {
    try {
      const headers = { Accept: "text/event-stream", ...authHeaders() };
      if (last !== null) headers["Last-Event-ID"] = last;
      const answer = await fetch(ROOT + path, { headers, signal });
      if (!answer.ok || !answer.body) throw new ApiError(answer.status, "the stream was refused");
      const reader = answer.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        const parsed = parseEvents(buffer + value);
        buffer = parsed.rest;
        for (const event of parsed.events) {
          if (event.id !== null) last = event.id;
          onEvent(event);
        }
      }
    } catch (error) {
      if (signal.aborted) return;
    }
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
}
