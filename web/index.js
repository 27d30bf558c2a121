// The landing page: choose a demo user ("log in" = keep its token in sessionStorage).
import { announce, el, initPage, onLanguageChange, session, t } from "./app.js";

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
    box.replaceChildren(el("p", { text: t("index.no_users") }));
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
load();
