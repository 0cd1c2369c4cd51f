// The web application: sign-in, the router and the header. Each page is a module with
// render(view, context, path) that returns what stops it (streams, timers) or nothing.
import { session } from "./api.js";
import { finishOidc, loadConfig, signInWithKey, signInWithShare, signOut, startOidc, whoAmI } from "./auth.js";
import { h, say } from "./dom.js";
import { can } from "./logic.js";
import * as admin from "./admin.js";
import * as study from "./study.js";
import * as studies from "./studies.js";
import * as upload from "./upload.js";
import * as worklist from "./worklist.js";

const PAGES = { studies, study, upload, worklist, admin };
// The scope each page needs (the server checks again: this only hides what would fail).
const NEEDS = { studies: "read", study: "read", upload: "write", worklist: "read", admin: "admin" };
const state = { config: { auth: [], oidc: null, viewer: null }, me: null, stop: null, notice: null };

async function identify() {
  state.me = await whoAmI().catch(() => null);
  const who = document.getElementById("who");
  const credential = session.get();
  if (state.me) {
    const name = state.me.principal
      ? `Signed in as ${state.me.principal}`
      : state.config.auth.length ? "Signed in" : "Open access";
    who.replaceChildren(h("span", { id: "signed-in", title: `Scopes: ${state.me.scopes.join(", ")}` }, name));
    if (credential) {
      who.append(h("button", { type: "button", id: "sign-out", onclick: () => { signOut(); identify().then(route); } }, "Sign out"));
    }
  } else {
    who.replaceChildren(h("a", { href: "#/signin" }, "Sign in"));
  }
  for (const link of document.querySelectorAll("#nav a")) {
    link.hidden = !(state.me && can(state.me.scopes, NEEDS[link.getAttribute("href").slice(2)]));
  }
}

function signInPage(view) {
  const forms = [];
  if (state.config.oidc) {
    forms.push(h("section", { "aria-labelledby": "oidc-title" },
      h("h2", { id: "oidc-title" }, "Organisation account"),
      h("button", { type: "button", id: "oidc-sign-in", onclick: () => startOidc(state.config.oidc).catch((e) => say(e.message, "error")) }, "Sign in with your organisation")));
  }
  if (state.config.auth.includes("api-key") || !state.config.oidc) {
    // Without the provider's sign-in, a token got elsewhere may be pasted here too.
    const what = state.config.auth.includes("oidc") ? "API key or access token" : "API key";
    const input = h("input", { id: "apikey", type: "password", autocomplete: "off", required: true });
    forms.push(h("section", { "aria-labelledby": "key-title" },
      h("h2", { id: "key-title" }, what),
      h("form", {
        id: "key-form",
        onsubmit: async (event) => {
          event.preventDefault();
          try {
            await signInWithKey(input.value.trim());
            await identify();
            window.location.hash = "#/studies";
            route();
          } catch (error) {
            say(error.message, "error");
          }
        },
      }, h("label", { for: "apikey" }, "Key"), " ", input, " ", h("button", { type: "submit" }, "Sign in"))));
  }
  view.replaceChildren(h("h1", {}, "Sign in"), ...forms);
}

function sharedPage(view, token) {
  const code = h("input", { id: "share-code", inputmode: "numeric", autocomplete: "one-time-code" });
  view.replaceChildren(
    h("h1", {}, "A study shared with you"),
    h("form", {
      id: "share-form",
      onsubmit: async (event) => {
        event.preventDefault();
        try {
          const found = await signInWithShare(token, code.value.trim());
          await identify();
          window.location.hash = `#/study/${found.study}`;
        } catch (error) {
          say(error.message, "error");
        }
      },
    }, h("p", {}, "Enter the one-time code you were given with the link, if any."),
    h("label", { for: "share-code" }, "One-time code"), " ", code, " ", h("button", { type: "submit" }, "Open")),
  );
}

function route() {
  if (state.stop) state.stop();
  state.stop = null;
  const [path, query] = window.location.hash.slice(1).split("?");
  const parts = path.split("/").filter(Boolean);
  const view = document.getElementById("view");
  say(state.notice || "", state.notice ? "error" : "info");
  state.notice = null;
  if (parts[0] === "shared" && parts[1]) return sharedPage(view, decodeURIComponent(parts[1]));
  if (!state.me || parts[0] === "signin") return signInPage(view);
  const name = PAGES[parts[0]] ? parts[0] : "studies";
  if (!can(state.me.scopes, NEEDS[name])) {
    view.replaceChildren(h("h1", {}, "Not allowed"), h("p", {}, `This page needs the scope ${NEEDS[name]}.`));
    return;
  }
  for (const link of document.querySelectorAll("#nav a")) {
    if (link.getAttribute("href") === `#/${name}`) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  const context = { config: state.config, me: state.me, params: new URLSearchParams(query || ""), identify };
  state.stop = PAGES[name].render(view, context, parts.slice(1).map(decodeURIComponent)) || null;
}

async function start() {
  try {
    state.config = await loadConfig();
    if (state.config.oidc) await finishOidc(state.config.oidc);
  } catch (error) {
    say(error.message, "error");
  }
  await identify();
  window.addEventListener("hashchange", route);
  window.addEventListener("dicomweb:unauthenticated", async (event) => {
    if (!state.me) return;
    signOut();
    await identify();
    if (!state.me) {
      state.notice = `Sign in again: ${event.detail}`;
      if (window.location.hash === "#/signin") route();
      else window.location.hash = "#/signin";
    }
  });
  route();
}

start();
