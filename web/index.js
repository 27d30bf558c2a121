// The sign-in page. Patients sign in through the login.gov.pl simulator and the Auth emulator
// (its blocking function sets role and PESEL); staff, agents and admins with e-mail and
// password (docs/identity.md). The session keeps the ID token in sessionStorage (app.js).
import { announce, claims, currentLanguage, el, initPage, onLanguageChange, session, t } from "./app.js";

const TEXT = {
  pl: {
    patient: "Pacjent: zaloguj się przez login.gov.pl (symulator)",
    staff: "Personel, konsultanci, administratorzy: e-mail i hasło",
    signIn: "Zaloguj",
    failed: "Logowanie nie powiodło się",
  },
  en: {
    patient: "Patient: sign in with login.gov.pl (simulator)",
    staff: "Staff, agents, admins: e-mail and password",
    signIn: "Sign in",
    failed: "Sign-in failed",
  },
};
const say = (key) => (TEXT[currentLanguage()] || TEXT.pl)[key];
let config = null;

async function loadSignIn() {
  try {
    const response = await fetch("/dev/sign-in", { headers: { Accept: "application/json" } });
    config = response.ok ? await response.json() : {};
  } catch {
    config = {};
  }
  if (!config.auth_emulator) return;
  await finishPatientSignIn();
  renderSignIn();
}

function renderSignIn() {
  const box = document.getElementById("users");
  if (!config || !config.auth_emulator) return;
  const patients = el(
    "div",
    { class: "user-group" },
    el("h3", { text: say("patient") }),
    el("ul", { class: "user-list" }, config.patients.map((p) =>
      el("li", {}, el("button", { type: "button", text: p.label, onclick: () => startPatientSignIn(p.person) })),
    )),
  );
  const accounts = el(
    "div",
    { class: "user-group" },
    el("h3", { text: say("staff") }),
    el("ul", { class: "user-list" }, config.accounts.map((a) =>
      el("li", {}, el("button", {
        type: "button",
        text: `${say("signIn")}: ${a.label} (${a.email})`,
        onclick: () => passwordSignIn(a.email, a.password, a.label),
      })),
    )),
  );
  box.prepend(patients, accounts);
}

function startPatientSignIn(person) {
  const state = crypto.randomUUID();
  const nonce = crypto.randomUUID();
  sessionStorage.setItem("erej.login", JSON.stringify({ state, nonce }));
  const back = `${location.origin}${location.pathname}`;
  const query = new URLSearchParams({
    client_id: config.client_id, redirect_uri: back, response_type: "id_token", state, nonce,
  });
  // Without `person`, the simulator shows its own page to choose who you are.
  if (person) query.set("person", person);
  location.assign(`${config.login_node}/authorize?${query}`);
}

async function finishPatientSignIn() {
  const fragment = new URLSearchParams(location.hash.slice(1));
  const nodeToken = fragment.get("id_token");
  if (!nodeToken) return;
  history.replaceState(null, "", location.pathname);
  const started = JSON.parse(sessionStorage.getItem("erej.login") || "{}");
  sessionStorage.removeItem("erej.login");
  if (fragment.get("state") !== started.state) return announce(say("failed"), "error");
  const body = {
    postBody: new URLSearchParams({ id_token: nodeToken, providerId: config.provider_id }).toString(),
    requestUri: location.href,
    returnSecureToken: true,
  };
  await finish("accounts:signInWithIdp", body);
}

function passwordSignIn(email, password, label) {
  return finish("accounts:signInWithPassword", { email, password, returnSecureToken: true }, label);
}

async function finish(operation, body, label) {
  const url = `${config.auth_emulator}/identitytoolkit.googleapis.com/v1/${operation}?key=${config.api_key}`;
  try {
    const response = await fetch(url, {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
    });
    const answer = await response.json();
    if (!response.ok) throw new Error((answer.error && answer.error.message) || `HTTP ${response.status}`);
    const c = claims(answer.idToken);
    login(answer.localId, { role: c.role, label: label || c.role, token: answer.idToken });
  } catch (err) {
    announce(`${say("failed")} (${err.message})`, "error");
  }
}

const APP_OF_ROLE = { staff: "staff.html", admin: "staff.html", agent: "agent.html", patient: "patient.html" };
const ROLE_ORDER = ["staff", "agent", "patient", "admin"];

initPage();
let users = null;

async function load() {
  const box = document.getElementById("users");
  try {
    const response = await fetch("/dev/tokens", { headers: { Accept: "application/json" } });
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    users = await response.json();
  } catch (err) {
    users = {};
    announce(`${t("index.tokens_failed")} (${err.message})`, "error");
  }
  box.removeAttribute("aria-busy");
  render();
}

function render() {
  const box = document.getElementById("users");
  if (!users) return;
  const entries = Object.entries(users);
  if (!entries.length) {
    // The stack signs in for real (renderSignIn); /dev/tokens is the browser tests' shortcut.
    box.replaceChildren(config && config.auth_emulator ? "" : el("p", { text: t("index.no_users") }));
    if (config && config.auth_emulator) renderSignIn();
    return;
  }
  const current = session.get();
  const groups = ROLE_ORDER.map((role) => [role, entries.filter(([, u]) => u.role === role)]).filter(
    ([, list]) => list.length,
  );
  box.replaceChildren(
    ...groups.map(([role, list]) =>
      el(
        "div",
        { class: "user-group" },
        el("h3", { text: t(`role.${role}`) }),
        el(
          "ul",
          { class: "user-list" },
          list.map(([uid, user]) =>
            el(
              "li",
              {},
              el("button", {
                type: "button",
                class: current && current.uid === uid ? "primary" : "",
                "data-uid": uid,
                text: t("index.login_as", { label: user.label }),
                onclick: () => login(uid, user),
              }),
            ),
          ),
        ),
      ),
    ),
  );
}

function login(uid, user) {
  session.set({ uid, role: user.role, label: user.label, token: user.token });
  location.assign(APP_OF_ROLE[user.role] || "index.html");
}

onLanguageChange(render);
load().then(loadSignIn);
