// The patient's page (demo): find a slot near a postcode or here, book, my appointments, cancel.
import {
  addDays,
  announce,
  api,
  el,
  fillProducts,
  formatDateTime,
  initPage,
  onLanguageChange,
  openDialog,
  productName,
  run,
  statusText,
  t,
  todayWarsaw,
} from "./app.js";
import { normalisePostcode, renderResults } from "./slots.js";

const $ = (id) => document.getElementById(id);

let mine = [];
let lastSearch = null;
let coords = null; // {lat, lon} from the browser, when the patient allowed it
let cancelling = null;

const sess = initPage({ roles: ["patient"] });
if (sess) start();

function start() {
  fillProducts($("search-product"), { any: true });
  $("search-from").value = todayWarsaw();
  $("search-to").value = addDays(todayWarsaw(), 30);
  $("search-form").addEventListener("submit", search);
  $("more-results").addEventListener("click", moreResults);
  $("use-location").addEventListener("click", useLocation);
  $("search-postcode").addEventListener("input", () => {
    coords = null;
    $("location-msg").textContent = "";
  });
  $("cancel-form").addEventListener("submit", cancel);
  if (!("geolocation" in navigator)) $("use-location").hidden = true;
  onLanguageChange(() => {
    renderMine();
    if (lastSearch) showResults(lastSearch.result, false);
  });
  loadMine();
}

async function loadMine() {
  await run(null, async () => {
    const data = await api("GET", "/v1/me/appointments");
    mine = data.appointments;
    renderMine();
  });
}

function renderMine() {
  $("mine-table")
    .querySelector("tbody")
    .replaceChildren(
      ...(mine.length
        ? mine.map((a) => {
            const label = `${formatDateTime(a.starts_at)} ${productName(a.product)}`;
            const cancellable = a.status === "booked" && new Date(a.starts_at) > new Date();
            return el(
              "tr",
              { "data-appointment": a.appointment_id, class: `status-${a.status}` },
              el("td", { text: formatDateTime(a.starts_at) }),
              el("td", { text: a.point_id }),
              el("td", { text: productName(a.product) }),
              el("td", { text: t(`dose.${a.dose_kind}`, { n: a.dose_number }) }),
              el("td", { text: statusText(a.status) }),
              el(
                "td",
                { class: "actions" },
                cancellable
                  ? el("button", {
                      type: "button",
                      class: "danger",
                      text: t("agent.cancel"),
                      "aria-label": `${t("agent.cancel")}: ${label}`,
                      onclick: () => openCancel(a),
                    })
                  : "—",
              ),
            );
          })
        : [el("tr", {}, el("td", { colspan: "6", text: t("patient.none") }))]),
    );
}

function useLocation(e) {
  const button = e.currentTarget;
  $("location-msg").textContent = t("patient.locating");
  button.disabled = true;
  navigator.geolocation.getCurrentPosition(
    (pos) => {
      button.disabled = false;
      coords = {
        lat: Math.round(pos.coords.latitude * 1000) / 1000,
        lon: Math.round(pos.coords.longitude * 1000) / 1000,
      };
      $("search-postcode").value = "";
      $("location-msg").textContent = t("patient.located");
      search();
    },
    (err) => {
      button.disabled = false;
      coords = null;
      $("location-msg").textContent = t("patient.location_failed", { reason: err.message });
      $("search-postcode").focus();
    },
    { enableHighAccuracy: false, timeout: 10000, maximumAge: 600000 },
  );
}

function searchQuery() {
  const base = {
    product: $("search-product").value || undefined,
    date_from: $("search-from").value || undefined,
    date_to: $("search-to").value || undefined,
    accessible: $("search-accessible").checked ? "true" : undefined,
    limit: 5,
  };
  if (coords) return { ...base, lat: coords.lat, lon: coords.lon };
  const postcode = normalisePostcode($("search-postcode").value);
  return postcode ? { ...base, postcode } : null;
}

async function search(e) {
  if (e) e.preventDefault();
  const query = searchQuery();
  if (!query) {
    $("search-postcode").setAttribute("aria-invalid", "true");
    announce(t("search.postcode_invalid"), "error");
    $("search-postcode").focus();
    return;
  }
  $("search-postcode").removeAttribute("aria-invalid");
  await run(e && e.submitter, async () => {
    const result = await api("GET", "/v1/slots", { query });
    lastSearch = { query, result, cursor: result.next_cursor };
    showResults(result, false);
    announce(t("search.found", { n: result.items.length }));
  });
}

async function moreResults(e) {
  if (!lastSearch || !lastSearch.cursor) return;
  await run(e.currentTarget, async () => {
    const result = await api("GET", "/v1/slots", {
      query: { ...lastSearch.query, cursor: lastSearch.cursor },
    });
    lastSearch.cursor = result.next_cursor;
    lastSearch.result = { ...lastSearch.result, items: [...lastSearch.result.items, ...result.items] };
    showResults(result, true);
  });
}

function showResults(result, append) {
  renderResults($("results"), result, {
    append,
    query: lastSearch.query,
    verb: () => t("agent.book"),
    onPick: book,
  });
  $("more-results").hidden = !(lastSearch && lastSearch.cursor);
}

async function book(slot, button) {
  await run(button, async () => {
    const result = await api("POST", "/v1/appointments", {
      body: { slot_id: slot.slot_id },
      action: "book",
    });
    const list = result.appointments
      .map((a) => `${t(`dose.${a.dose_kind}`, { n: a.dose_number })}: ${formatDateTime(a.starts_at)}`)
      .join("; ");
    await loadMine();
    announce(t("patient.booked", { list }));
    $("mine").focus();
  });
}

function openCancel(a) {
  cancelling = a;
  $("cancel-visit").textContent = `${formatDateTime(a.starts_at)} · ${a.point_id} · ${productName(a.product)} · ${t(
    `dose.${a.dose_kind}`,
    { n: a.dose_number },
  )}`;
  openDialog($("cancel-dialog"));
}

async function cancel(e) {
  e.preventDefault();
  await run(e.submitter, async () => {
    const result = await api("POST", `/v1/appointments/${encodeURIComponent(cancelling.appointment_id)}/cancel`, {
      body: {},
      action: "cancel",
    });
    $("cancel-dialog").close();
    await loadMine();
    announce(t("agent.cancelled", { n: result.appointments.length }));
    $("mine").focus();
  });
}
