// Shared by every page: the session, the API client, messages, dates, PESEL checks.
// Plain ES module, no build step. A PESEL is never put in a URL or in web storage: it lives
// only in form fields and in memory (see docs/web-apps.md).
import { t, tOr, initI18n, onLanguageChange, currentLanguage } from "./i18n.js";

export { t, tOr, onLanguageChange, currentLanguage };

const SESSION_KEY = "erej.session";

// -- session -------------------------------------------------------------------------------
// "Logging in" locally keeps a demo user's ID token in sessionStorage (gone with the tab).
// In production the portal's Identity Platform sign-in provides the token instead.
export const session = {
  get() {
    try {
      return JSON.parse(sessionStorage.getItem(SESSION_KEY) || "null");
    } catch {
      return null;
    }
  },
  set(value) {
    sessionStorage.setItem(SESSION_KEY, JSON.stringify(value));
  },
  clear() {
    sessionStorage.removeItem(SESSION_KEY);
  },
};

/** The claims of a JWT (read only for display: the server verifies the token). */
export function claims(token) {
  try {
    const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    const padded = part + "=".repeat((4 - (part.length % 4)) % 4);
    const bytes = Uint8Array.from(atob(padded), (c) => c.charCodeAt(0));
    return JSON.parse(new TextDecoder().decode(bytes));
  } catch {
    return {};
  }
}

// -- the API client ------------------------------------------------------------------------
export class ApiError extends Error {
  constructor(status, code, message, details) {
    super(message);
    this.status = status;
    this.code = code;
    this.details = details;
  }
}

function newKey() {
  if (globalThis.crypto && typeof crypto.randomUUID === "function") return crypto.randomUUID();
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const h = [...b].map((x) => x.toString(16).padStart(2, "0")).join("");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

// One Idempotency-Key per user action. The same action (same name, same request) retried
// after a failure whose outcome is unknown (network error, 5xx, 503, "request in progress")
// reuses its key, so the server replays the first result instead of doing it twice. A success
// or a definite refusal ends the action: the next attempt is a new action with a new key.
// Kept in memory only (the request body may hold a PESEL).
const pendingKeys = new Map();

function keyFor(action, method, path, body) {
  const id = `${action}\n${method} ${path}\n${JSON.stringify(body ?? null)}`;
  if (!pendingKeys.has(id)) pendingKeys.set(id, newKey());
  return [id, pendingKeys.get(id)];
}

/** For tests and the curious: how many actions are waiting for a retry. */
export function pendingActions() {
  return pendingKeys.size;
}

function isUncertain(status, code) {
  return status === 0 || status >= 500 || status === 429 || code === "request_in_progress";
}

// The API's contract under overload (api/openapi.yaml): a 503 or 429 says how long to wait in
// Retry-After; a dropped connection says nothing. Either way the same request goes again with
// the same Idempotency-Key, so the server answers with the one true result (the booking if an
// earlier attempt landed unseen), for up to RETRY_PATIENCE_MS; the person is told meanwhile.
export const RETRY_PATIENCE_MS = 60000;
const NETWORK_PAUSE_MS = 1000;
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function retryDelayMs(status, retryAfter) {
  if (status === 0) return NETWORK_PAUSE_MS * (0.5 + Math.random());
  if (status !== 503 && status !== 429) return null;
  const seconds = Number.parseFloat(retryAfter || "1");
  const base = Number.isFinite(seconds) && seconds > 0 ? seconds * 1000 : 1000;
  return base + Math.random() * Math.min(base, 2000); // jitter: not everyone at once again
}

/**
 * Call the public API (same origin). Writes (any method but GET) carry an Idempotency-Key
 * unless `idempotent: false` (the patient look-up, a read sent as POST). Retries by itself
 * while the service sheds load (see above); `onWait(seconds)` hears about each wait.
 */
export async function api(method, path, options = {}) {
  const started = Date.now();
  for (;;) {
    try {
      return await apiOnce(method, path, options);
    } catch (err) {
      const delay =
        err instanceof ApiError ? retryDelayMs(err.status, err.details && err.details.retry_after) : null;
      if (delay === null || Date.now() + delay - started > RETRY_PATIENCE_MS) throw err;
      announce(t("status.busy_retrying", { s: Math.ceil(delay / 1000) }));
      if (options.onWait) options.onWait(delay / 1000);
      await sleep(delay);
    }
  }
}

async function apiOnce(method, path, { query, body, action, idempotent } = {}) {
  const s = session.get();
  const headers = { Accept: "application/json" };
  if (s && s.token) headers.Authorization = `Bearer ${s.token}`;
  let url = path;
  if (query) {
    const params = new URLSearchParams();
    for (const [k, v] of Object.entries(query)) {
      if (v !== undefined && v !== null && v !== "") params.set(k, String(v));
    }
    const qs = params.toString();
    if (qs) url += `?${qs}`;
  }
  let pending = null;
  if (method !== "GET" && idempotent !== false) {
    const [id, key] = keyFor(action || path, method, path, body);
    headers["Idempotency-Key"] = key;
    pending = id;
  }
  const init = { method, headers };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(url, init);
  } catch {
    throw new ApiError(0, "network_error", t("error.network"));
  }
  let payload = null;
  const text = await response.text();
  try {
    payload = text ? JSON.parse(text) : null;
  } catch {
    payload = null;
  }
  if (!response.ok) {
    const err = (payload && payload.error) || {};
    const code = err.code || `http_${response.status}`;
    if (pending && !isUncertain(response.status, code)) pendingKeys.delete(pending);
    const retryAfter = response.headers.get("Retry-After");
    throw new ApiError(response.status, code, err.message || response.statusText, {
      ...(err.details || {}),
      ...(retryAfter ? { retry_after: retryAfter } : {}),
    });
  }
  if (pending) pendingKeys.delete(pending);
  return payload;
}

// -- messages (aria-live regions) -----------------------------------------------------------
/** Show a status message (polite) or an error (assertive) in the page's live regions. */
export function announce(message, kind = "ok") {
  const status = document.getElementById("status");
  // While a modal dialog is open the rest of the page is inert: its errors go inside it.
  const dialog = document.querySelector("dialog[open]");
  const error = (dialog && dialog.querySelector(".dialog-error")) || document.getElementById("error");
  for (const other of document.querySelectorAll(".dialog-error")) {
    if (other !== error) {
      other.textContent = "";
      other.hidden = true;
    }
  }
  if (kind === "error") {
    if (status) status.textContent = "";
    if (error) {
      error.textContent = message;
      error.hidden = false;
    }
  } else {
    if (error) {
      error.textContent = "";
      error.hidden = true;
    }
    if (status) status.textContent = message;
  }
}

export function clearMessages() {
  announce("");
}

/** A user-facing text for a failed call: the translated code when known, else the server's. */
export function describeError(err) {
  if (!(err instanceof ApiError)) return `${t("error.unexpected")}: ${err && err.message}`;
  if (err.status === 401) return t("error.unauthenticated");
  const known = tOr(`code.${err.code}`, null);
  const base = known ? `${known} (${err.message})` : err.message;
  const retry = err.details && err.details.retry_after;
  return `${t("error.prefix")} ${err.status || ""} ${err.code}: ${base}${
    retry ? ` ${t("error.retry_after", { s: retry })}` : ""
  }`.replace(/\s+/g, " ");
}

/** Run a user action with its button disabled; errors go to the live region. */
export async function run(button, fn) {
  if (button) {
    button.disabled = true;
    button.setAttribute("aria-busy", "true");
  }
  try {
    return await fn();
  } catch (err) {
    announce(describeError(err), "error");
    return undefined;
  } finally {
    if (button) {
      button.disabled = false;
      button.removeAttribute("aria-busy");
    }
  }
}

// -- dates and times (Europe/Warsaw) ------------------------------------------------------
const TZ = "Europe/Warsaw";

export function todayWarsaw(now = new Date()) {
  return new Intl.DateTimeFormat("en-CA", { timeZone: TZ }).format(now);
}

export function addDays(iso, days) {
  const d = new Date(`${iso}T12:00:00Z`);
  d.setUTCDate(d.getUTCDate() + days);
  return d.toISOString().slice(0, 10);
}

/** 0 = Monday ... 6 = Sunday (as the API's templates count). */
export function weekday(iso) {
  return (new Date(`${iso}T12:00:00Z`).getUTCDay() + 6) % 7;
}

function locale() {
  return currentLanguage() === "en" ? "en-GB" : "pl-PL";
}

export function formatDay(iso) {
  return new Intl.DateTimeFormat(locale(), {
    weekday: "short",
    day: "numeric",
    month: "numeric",
    year: "numeric",
    timeZone: "UTC",
  }).format(new Date(`${iso}T12:00:00Z`));
}

export function formatTime(isoDateTime) {
  return new Intl.DateTimeFormat(locale(), {
    hour: "2-digit",
    minute: "2-digit",
    timeZone: TZ,
  }).format(new Date(isoDateTime));
}

export function formatDateTime(isoDateTime) {
  if (!isoDateTime) return "";
  return new Intl.DateTimeFormat(locale(), {
    weekday: "short",
    day: "numeric",
    month: "numeric",
    year: "numeric",
    hour: "2-digit",
    minute: "2-digit",
    timeZone: TZ,
  }).format(new Date(isoDateTime));
}

export function dayOf(isoDateTime) {
  return todayWarsaw(new Date(isoDateTime));
}

// -- PESEL (checked here too, for a friendly message before any call) ---------------------
/** null when valid, else the i18n key of what is wrong. */
export function peselProblem(value) {
  if (!/^\d{11}$/.test(value)) return "pesel.not_11_digits";
  const d = [...value].map(Number);
  const weights = [1, 3, 7, 9, 1, 3, 7, 9, 1, 3];
  const sum = weights.reduce((acc, w, i) => acc + w * d[i], 0);
  if ((10 - (sum % 10)) % 10 !== d[10]) return "pesel.bad_checksum";
  let month = d[2] * 10 + d[3];
  const year2 = d[0] * 10 + d[1];
  const centuries = { 0: 1900, 20: 2000, 40: 2100, 60: 2200, 80: 1800 };
  const offset = Math.floor(month / 20) * 20;
  if (!(offset in centuries)) return "pesel.bad_date";
  month -= offset;
  const year = centuries[offset] + year2;
  const day = d[4] * 10 + d[5];
  const date = new Date(Date.UTC(year, month - 1, day));
  if (
    month < 1 ||
    month > 12 ||
    date.getUTCFullYear() !== year ||
    date.getUTCMonth() !== month - 1 ||
    date.getUTCDate() !== day
  ) {
    return "pesel.bad_date";
  }
  if (date > new Date()) return "pesel.bad_date";
  return null;
}

/** Mark a PESEL input valid/invalid with a message tied to it (aria-describedby). */
export function checkPeselInput(input, messageEl) {
  const value = input.value.trim();
  const problem = peselProblem(value);
  if (problem) {
    input.setAttribute("aria-invalid", "true");
    if (messageEl) messageEl.textContent = t(problem);
    input.focus();
    return null;
  }
  input.removeAttribute("aria-invalid");
  if (messageEl) messageEl.textContent = "";
  return value;
}

// -- products -------------------------------------------------------------------------------
export const PRODUCTS = [
  ["comirnaty", "Comirnaty"],
  ["comirnaty_paediatric", "Comirnaty (10 µg)"],
  ["spikevax", "Spikevax"],
  ["vaxzevria", "Vaxzevria"],
  ["jcovden", "Jcovden"],
  ["nuvaxovid", "Nuvaxovid"],
];

export function productName(code) {
  const found = PRODUCTS.find(([c]) => c === code);
  return found ? found[1] : code;
}

export function fillProducts(select, { any = false, preferred = [] } = {}) {
  const previous = select.value;
  select.replaceChildren();
  if (any) select.append(new Option(t("product.any"), ""));
  for (const [code, name] of PRODUCTS) select.append(new Option(name, code));
  if (previous && [...select.options].some((o) => o.value === previous)) select.value = previous;
  else if (preferred.length) select.value = preferred[0];
}

// -- small DOM helpers -----------------------------------------------------------------------
/** el("td", {class: "x", text: "..."}, child, ...) */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "text") node.textContent = v;
    else if (k === "class") node.className = v;
    else if (k === "dataset") Object.assign(node.dataset, v);
    else if (k.startsWith("on") && typeof v === "function") node.addEventListener(k.slice(2), v);
    else if (v === true) node.setAttribute(k, "");
    else node.setAttribute(k, v);
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

export function statusText(status) {
  return tOr(`status.${status}`, status);
}

export function sexText(sex) {
  return sex ? t(`sex.${sex}`) : "";
}

export function patientText(p) {
  if (!p) return "";
  return [p.masked_pesel, p.birth_year ? t("patient.born", { year: p.birth_year }) : "", sexText(p.sex)]
    .filter(Boolean)
    .join(", ");
}

/** Open a <dialog> modally and focus its first field (Esc or "Cancel" closes it). */
export function openDialog(dialog) {
  const error = dialog.querySelector(".dialog-error");
  if (error) {
    error.textContent = "";
    error.hidden = true;
  }
  const first =
    dialog.querySelector("[autofocus]") ||
    dialog.querySelector("input:not([type=hidden]), select, textarea, button");
  dialog.showModal();
  if (first) first.focus();
}

function setUpDialogs() {
  for (const dialog of document.querySelectorAll("dialog")) {
    if (!dialog.querySelector(".dialog-error")) {
      const error = el("p", { class: "error dialog-error", role: "alert", hidden: true });
      const actions = dialog.querySelector(".dialog-actions");
      if (actions) actions.before(error);
      else dialog.append(error);
    }
    for (const cancel of dialog.querySelectorAll(".dialog-cancel")) {
      cancel.addEventListener("click", () => dialog.close("cancel"));
    }
  }
}

// -- page frame: header, language toggle, sign-in check ---------------------------------------
/**
 * Set up a page: translations, the language toggle, the log-out button, and the signed-in
 * user. Returns the session when its role may use this page, else shows how to log in.
 */
export function initPage({ roles } = {}) {
  initI18n();
  setUpDialogs();
  const s = session.get();
  const who = document.getElementById("who");
  const logout = document.getElementById("logout");
  if (logout) {
    logout.addEventListener("click", () => {
      session.clear();
      location.assign("index.html");
    });
    logout.hidden = !s;
  }
  if (who) {
    const render = () => {
      const current = session.get();
      who.textContent = current
        ? t("header.signed_in_as", { label: current.label })
        : t("header.not_signed_in");
    };
    render();
    onLanguageChange(render);
  }
  if (roles && (!s || !roles.includes(s.role))) {
    const main = document.querySelector("main");
    const notice = el(
      "section",
      { class: "card notice", "aria-labelledby": "login-needed" },
      el("h2", { id: "login-needed", "data-i18n": "login.needed_title" }),
      el("p", {}, el("span", { "data-i18n": "login.needed_text" }), " "),
      el("p", {}, el("a", { href: "index.html", "data-i18n": "login.go" })),
    );
    notice.querySelector("p").append(roles.map((r) => t(`role.${r}`)).join(", "));
    for (const child of [...main.children]) if (child.id !== "messages") child.hidden = true;
    main.prepend(notice);
    initI18n();
    return null;
  }
  return s;
}
