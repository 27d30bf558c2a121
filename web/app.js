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
      // `retry: false`: the caller paces itself (a poller that waits Retry-After on its own).
      if (options.retry === false) throw err;
      const delay =
        err instanceof ApiError ? retryDelayMs(err.status, err.details && err.details.retry_after) : null;
      if (delay === null || Date.now() + delay - started > RETRY_PATIENCE_MS) throw err;
      announce(t("status.busy_retrying", { s: Math.ceil(delay / 1000) }));
      if (options.onWait) options.onWait(delay / 1000);
      await sleep(delay);
    }
  }
}

async function apiOnce(method, path, { query, body, action, idempotent, headers: extra } = {}) {
  const s = session.get();
  // `headers`: extra request headers, e.g. the waiting room's X-Queue-Ticket (web/queue.js).
  const headers = { ...(extra || {}), Accept: "application/json" };
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
// The last message is kept as a function of the language, so that switching languages
// re-renders it instead of leaving a Polish sentence on an English page.
let lastMessage = null; // {render: () => string, kind, details: () => string | null}

/**
 * Show a status message (polite) or an error (assertive) in the page's live regions.
 * `message` is a string or a function returning one (re-rendered on a language change);
 * `details` (errors) goes into a <details> element for support: status, code, server text.
 */
export function announce(message, kind = "ok", details = null) {
  lastMessage = message
    ? {
        render: typeof message === "function" ? message : () => message,
        kind,
        details: typeof details === "function" ? details : () => details,
      }
    : null;
  paintMessage();
}

function paintMessage() {
  const status = document.getElementById("status");
  // While a modal dialog is open the rest of the page is inert: its errors go inside it.
  const dialog = document.querySelector("dialog[open]");
  const error = (dialog && dialog.querySelector(".dialog-error")) || document.getElementById("error");
  for (const other of document.querySelectorAll(".dialog-error, #error")) {
    if (other !== error || !lastMessage || lastMessage.kind !== "error") {
      other.replaceChildren();
      other.hidden = true;
    }
  }
  if (status) status.textContent = "";
  if (!lastMessage) return;
  const text = lastMessage.render();
  if (lastMessage.kind === "error") {
    if (!error) return;
    const details = lastMessage.details();
    error.replaceChildren(
      el("span", { class: "error-text", text }),
      details
        ? el(
            "details",
            { class: "error-details" },
            el("summary", { text: t("error.details") }),
            el("p", { class: "mono", text: details }),
          )
        : null,
    );
    error.hidden = false;
  } else if (status) {
    status.textContent = text;
  }
}

export function clearMessages() {
  announce("");
}

/** Take down the error shown (it no longer applies: e.g. the turn it was about has come). */
export function dismissError() {
  if (lastMessage && lastMessage.kind === "error") announce("");
}

let audience = "staff"; // "me" on the patient's own page: errors speak to "you"

/** The plain-language text of a failed call: what happened and what to do next. */
export function errorText(err) {
  if (!(err instanceof ApiError)) return t("error.unexpected");
  if (err.status === 0) return t("error.network");
  if (err.status === 401) return t("error.unauthenticated");
  const d = err.details || {};
  const params = {
    opens: d.opens_at ? formatDateTime(d.opens_at) : "",
    room: d.window_opens_at ? formatDateTime(d.window_opens_at) : "",
    turn_ends: d.turn_ends_at ? formatTime(d.turn_ends_at) : "",
    position: d.position ?? "",
    valid_from: d.valid_from ? formatDay(d.valid_from) : "",
    valid_to: d.valid_to ? formatDay(d.valid_to) : "",
    earliest: d.earliest ? formatDay(d.earliest) : "",
    latest: d.latest ? formatDay(d.latest) : "",
    min_age: d.min_age ?? "",
    max_age: d.max_age ?? "",
    s: d.retry_after || "",
  };
  // A more precise text when the details allow one (which dates, which reason).
  const flavour =
    d.reason ||
    (d.expired
      ? "expired"
      : d.position
        ? "waiting"
        : d.latest
          ? "window"
          : d.earliest
            ? "from"
            : d.opens_at
              ? "dated"
              : null);
  const variant =
    flavour &&
    ((audience === "me" && tOr(`error.me.${err.code}.${flavour}`, null, params)) ||
      tOr(`error.${err.code}.${flavour}`, null, params));
  const text =
    variant ||
    (audience === "me" && tOr(`error.me.${err.code}`, null, params)) ||
    tOr(`error.${err.code}`, null, params) ||
    tOr(`error.http_${err.status}`, null, params) ||
    t("error.generic");
  return text;
}

/** For support: the HTTP status, the API's code and its own (English) message. */
export function errorDetails(err) {
  if (!(err instanceof ApiError)) return `${(err && err.message) || err}`;
  const retry = err.details && err.details.retry_after ? ` · Retry-After: ${err.details.retry_after}` : "";
  return `HTTP ${err.status || "—"} · ${err.code} · ${err.message}${retry}`;
}

/** Show a failed call: the plain text first, the technical details folded away. */
export function showError(err) {
  announce(() => errorText(err), "error", () => errorDetails(err));
}

/** Kept for callers of the old API: the plain text (no codes). */
export function describeError(err) {
  return errorText(err);
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
    showError(err);
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

// -- products ---------------------------------------------------------------------------------
// No app keeps a product list: the lists come from the API (the patient's eligible products,
// the point's products); only the display names are translations (product.<code> in i18n.js),
// with the catalogue's own name, then the code, as fallbacks.
const catalogueNames = new Map();

/** Remember the catalogue's names and facts of products the API described. */
export function rememberProducts(list) {
  for (const p of list || []) if (p && p.product) catalogueNames.set(p.product, p);
}

export function productInfo(code) {
  return catalogueNames.get(code) || null;
}

export function productName(code) {
  if (!code) return "";
  const known = catalogueNames.get(code);
  return tOr(`product.${code}`, (known && known.name) || code);
}

/** Fill a <select> with these product codes (and "any of them" first when `any`). */
export function fillProducts(select, codes, { any = false, anyKey = "product.any" } = {}) {
  const previous = select.value;
  select.replaceChildren();
  if (any) select.append(new Option(t(anyKey), ""));
  for (const code of codes) select.append(new Option(productName(code), code));
  if (previous !== "" && [...select.options].some((o) => o.value === previous)) select.value = previous;
}

/** "2 doses: dose 2 after 21–42 days (usually 35), at the same point" or "1 dose". */
export function dosesText(info) {
  if (!info) return "";
  if (info.doses === 2) {
    return t("product.two_doses", {
      min: info.min_interval_days,
      max: info.max_interval_days,
      planned: info.planned_interval_days,
    });
  }
  return t("product.one_dose");
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

export function doseText(a) {
  return t(`dose.${a.dose_kind}`, { n: a.dose_number });
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

/**
 * Which table cell is which on a phone: narrow screens show each row as a card (style.css),
 * each cell led by its column's name, taken from the table's own header cells.
 */
export function labelCells(table) {
  const heads = [...table.querySelectorAll("thead th")].map((th) => th.textContent.trim());
  for (const row of table.querySelectorAll("tbody tr")) {
    [...row.children].forEach((cell, i) => {
      if (heads[i] && !cell.hasAttribute("colspan")) cell.dataset.label = heads[i];
    });
  }
}

// -- places: where a visit is ------------------------------------------------------------------
/** "ul. Długa 1, 31-001 Kraków" */
export function addressText(point) {
  if (!point) return "";
  return [point.street, [point.postcode, point.place].filter(Boolean).join(" ")].filter(Boolean).join(", ");
}

/** OpenStreetMap at the point (a link: no map tiles are loaded by the apps). */
export function mapUrl(point) {
  const lat = Number(point.lat).toFixed(5);
  const lon = Number(point.lon).toFixed(5);
  return `https://www.openstreetmap.org/?mlat=${lat}&mlon=${lon}#map=17/${lat}/${lon}`;
}

/** OpenStreetMap's route planner, to the point (the start is the person's to choose). */
export function directionsUrl(point) {
  return `https://www.openstreetmap.org/directions?to=${Number(point.lat).toFixed(5)}%2C${Number(point.lon).toFixed(5)}`;
}

function hasPosition(point) {
  return point && Number.isFinite(Number(point.lat)) && Number.isFinite(Number(point.lon));
}

/**
 * The place of a visit as a person needs it: name, address, and a map link (named after the
 * place, so that a screen reader's list of links says which map). `pointId` when the API gave
 * no details (a point since removed).
 */
export function placeBlock(point, pointId, { directions = false, phone = false, name = true } = {}) {
  if (!point) return el("span", { text: pointId || "" });
  const links = [];
  if (hasPosition(point)) {
    links.push(
      el("a", {
        href: mapUrl(point),
        target: "_blank",
        rel: "noopener",
        class: "map-link",
        text: t("place.map"),
        "aria-label": t("place.map_of", { name: point.name }),
      }),
    );
    if (directions) {
      links.push(
        " · ",
        el("a", {
          href: directionsUrl(point),
          target: "_blank",
          rel: "noopener",
          text: t("place.directions"),
          "aria-label": t("place.directions_to", { name: point.name }),
        }),
      );
    }
  }
  return el(
    "div",
    { class: "place" },
    name ? el("strong", { class: "place-name", text: point.name }) : null,
    el("span", { class: "place-address", text: addressText(point) }),
    phone && point.phone ? el("span", { class: "place-phone", text: `${t("common.phone")}: ${point.phone}` }) : null,
    links.length ? el("span", { class: "place-links" }, links) : null,
  );
}

/** One line: "Name, street, postcode place" (messages, dialogs). */
export function placeText(point, pointId) {
  if (!point) return pointId || "";
  return [point.name, addressText(point)].filter(Boolean).join(", ");
}

/** Open a <dialog> modally and focus `focus` (or its first field). Esc or "Back" closes it. */
export function openDialog(dialog, focus = null) {
  const error = dialog.querySelector(".dialog-error");
  if (error) {
    error.replaceChildren();
    error.hidden = true;
  }
  const first =
    focus ||
    dialog.querySelector("[autofocus]") ||
    dialog.querySelector("input:not([type=hidden]), select, textarea, button");
  dialog.showModal();
  if (first) first.focus();
}

function setUpDialogs() {
  for (const dialog of document.querySelectorAll("dialog")) {
    if (!dialog.querySelector(".dialog-error")) {
      const error = el("div", { class: "error dialog-error", role: "alert", hidden: true });
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
/** The signed-in user's name for the header, in the page's language (demo users by uid). */
export function userLabel(s) {
  if (!s) return "";
  return tOr(`user.${s.uid}`, s.label || s.uid);
}

/**
 * Set up a page: translations, the language toggle, the log-out button, and the signed-in
 * user. Returns the session when its role may use this page, else shows how to log in.
 * `audience: "me"` makes errors speak to the person themself (the patient's page).
 */
export function initPage({ roles, audience: who = "staff" } = {}) {
  audience = who;
  initI18n();
  setUpDialogs();
  onLanguageChange(paintMessage);
  const s = session.get();
  const whoEl = document.getElementById("who");
  const logout = document.getElementById("logout");
  if (logout) {
    logout.addEventListener("click", () => {
      session.clear();
      location.assign("index.html");
    });
    logout.hidden = !s;
  }
  if (whoEl) {
    const render = () => {
      const current = session.get();
      whoEl.textContent = current
        ? t("header.signed_in_as", { label: userLabel(current) })
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
