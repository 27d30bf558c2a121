// Slot search results, shared by the agent's and the patient's pages.
import { api, el, formatDateTime, formatDay, productName, run, t } from "./app.js";

/**
 * Render GET /v1/slots results into `container` (appending when `append`).
 * `verb(slot)` is the button text's first word(s); `onPick(slot, button)` books or moves.
 */
export function renderResults(container, result, { verb, onPick, query, append = false }) {
  if (!append) container.replaceChildren();
  if (!append && !result.items.length) {
    container.append(el("p", { text: t("search.none") }));
    return;
  }
  if (!append) {
    container.append(
      el("p", {
        class: "muted",
        text: t("search.summary", { from: formatDay(result.date_from), to: formatDay(result.date_to) }),
      }),
    );
  }
  for (const item of result.items) container.append(pointCard(item, { verb, onPick, query }));
}

function slotButton(slot, verb, onPick) {
  const text = `${verb(slot)}: ${formatDateTime(slot.starts_at)} · ${productName(slot.product)} · ${t(
    "search.free",
    { n: slot.free },
  )}`;
  return el(
    "li",
    {},
    el("button", {
      type: "button",
      class: "slot-button",
      "data-slot": slot.slot_id,
      text,
      onclick: (e) => onPick(slot, e.currentTarget),
    }),
  );
}

function pointCard(item, { verb, onPick, query }) {
  const p = item.point;
  const headingId = `point-${p.point_id}`;
  const more = el("ul", { class: "slot-list", hidden: true });
  const details = [
    [p.street, [p.postcode, p.place].filter(Boolean).join(" ")].filter(Boolean).join(", "),
    t("search.distance", { km: item.distance_km.toFixed(1) }),
    p.accessible ? t("search.accessible") : null,
    t("search.free_seats", { n: item.free_seats }),
  ].filter(Boolean);
  const moreButton = el("button", {
    type: "button",
    class: "link-button",
    text: t("search.more_times"),
    "aria-label": `${t("search.more_times")}: ${p.name}`,
    "aria-expanded": "false",
    onclick: async (e) => {
      const button = e.currentTarget;
      if (button.getAttribute("aria-expanded") === "true") {
        more.hidden = true;
        button.setAttribute("aria-expanded", "false");
        return;
      }
      await run(button, async () => {
        const data = await api("GET", `/v1/points/${encodeURIComponent(p.point_id)}/slots`, {
          query: { product: query.product, date_from: query.date_from, date_to: query.date_to },
        });
        const shown = new Set(item.earliest_slots.map((s) => s.slot_id));
        const slots = data.slots.filter((s) => s.free > 0 && !shown.has(s.slot_id)).slice(0, 40);
        more.replaceChildren(
          ...(slots.length
            ? slots.map((s) => slotButton(s, verb, onPick))
            : [el("li", { text: t("search.no_more") })]),
        );
        more.hidden = false;
        button.setAttribute("aria-expanded", "true");
      });
    },
  });
  return el(
    "article",
    { class: "point-card", "aria-labelledby": headingId, "data-point": p.point_id },
    el("h3", { id: headingId, text: p.name }),
    el("p", { class: "muted", text: details.join(" · ") }),
    p.phone ? el("p", { class: "muted", text: `${t("common.phone")}: ${p.phone}` }) : null,
    el("ul", { class: "slot-list" }, item.earliest_slots.map((s) => slotButton(s, verb, onPick))),
    moreButton,
    more,
  );
}

/** The query of the search form (postcode normalised to 00-000). */
export function normalisePostcode(value) {
  const m = /^\s*(\d{2})\s*[-\u2010-\u2015\u2212]?\s*(\d{3})\s*$/.exec(value);
  return m ? `${m[1]}-${m[2]}` : null;
}
