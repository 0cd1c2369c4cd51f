// Signing in: an API key, or OpenID Connect (authorization code with PKCE, RFC 7636, at the
// issuer the server names in /ui/config.json); nothing when access control is off.
import { ApiError, json, session } from "./api.js";
import { pkcePair, randomText } from "./logic.js";

const PENDING = "dicomweb.oidc";

export async function loadConfig() {
  const answer = await fetch("config.json", { headers: { Accept: "application/json" } });
  return answer.json();
}

/** Who the server takes us for: {principal, scopes, limited, auth}; null when the
 * credential is refused or there is none and one is needed. */
export async function whoAmI() {
  try {
    return await json("/whoami");
  } catch (error) {
    if (error instanceof ApiError && error.status === 401) return null;
    throw error;
  }
}

export async function signInWithKey(key) {
  session.set({ kind: "api-key", secret: key });
  const me = await whoAmI();
  if (!me) {
    session.clear();
    throw new Error("the server does not accept this key");
  }
  return me;
}

/** A share link's session (POST /shares/redeem): the tab then reads that study only. */
export async function signInWithShare(token, code) {
  const body = code ? { token, code } : { token };
  const found = await json("/shares/redeem", {
    method: "POST",
    body: JSON.stringify(body),
    headers: { "Content-Type": "application/json" },
  });
  session.set({ kind: "share", secret: found.access_token, expires: Date.now() / 1000 + found.expires_in, study: found.study });
  return found;
}

async function discovery(issuer) {
  const answer = await fetch(`${issuer.replace(/\/$/, "")}/.well-known/openid-configuration`);
  if (!answer.ok) throw new Error("the identity provider cannot be reached");
  return answer.json();
}

function redirectUri() {
  return `${window.location.origin}${window.location.pathname}`;
}

/** Off to the provider's sign-in page; back at /ui/ with a code (finishOidc). */
export async function startOidc(oidc) {
  const provider = await discovery(oidc.issuer);
  const { verifier, challenge } = await pkcePair();
  const state = randomText(16);
  sessionStorage.setItem(PENDING, JSON.stringify({ verifier, state, back: window.location.hash }));
  const url = new URL(provider.authorization_endpoint);
  url.search = new URLSearchParams({
    response_type: "code",
    client_id: oidc.client_id,
    redirect_uri: redirectUri(),
    scope: oidc.scope,
    state,
    code_challenge: challenge,
    code_challenge_method: "S256",
  });
  window.location.assign(url);
}

/** The provider sent us back (?code=&state=): the code for a token (RFC 6749 4.1.3). */
export async function finishOidc(oidc) {
  const query = new URLSearchParams(window.location.search);
  if (!query.has("code") && !query.has("error")) return false;
  const pending = JSON.parse(sessionStorage.getItem(PENDING) || "null");
  sessionStorage.removeItem(PENDING);
  window.history.replaceState(null, "", window.location.pathname + ((pending && pending.back) || "#/"));
  if (query.has("error")) throw new Error(`sign-in refused: ${query.get("error")}`);
  if (!pending || pending.state !== query.get("state")) throw new Error("sign-in answer not asked for (state differs)");
  const provider = await discovery(oidc.issuer);
  const answer = await fetch(provider.token_endpoint, {
    method: "POST",
    headers: { "Content-Type": "application/x-www-form-urlencoded", Accept: "application/json" },
    body: new URLSearchParams({
      grant_type: "authorization_code",
      code: query.get("code"),
      redirect_uri: redirectUri(),
      client_id: oidc.client_id,
      code_verifier: pending.verifier,
    }),
  });
  const token = await answer.json();
  if (!answer.ok || !token.access_token) throw new Error(`sign-in failed: ${token.error || answer.status}`);
  session.set({ kind: "oidc", secret: token.access_token, expires: Date.now() / 1000 + (token.expires_in || 300) });
  return true;
}

export function signOut() {
  session.clear();
}
