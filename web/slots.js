// Slot search results, shared by the agent's and the patient's pages: points nearest first,
// each with its address, distance, accessibility, phone and a map link, its earliest free
// slots (in the chosen part of the day), and a day view: every free time of a chosen day.
import {
  api,
  dayOf,
  el,
  formatDateTime,
  formatDay,
  formatTime,
  placeBlock,
  productName,
  run,
  t,
} from "./app.js";

export const PARTS_OF_DAY = ["", "morning", "afternoon", "evening"];
const SHOWN = 3;

/** The part of the day a slot starts in (Warsaw time): morning < 12, afternoon < 17. */
export function partOfDay(isoDateTime) {
  const hour = Number(formatTime(isoDateTime).slice(0, 2));
  if (hour < 12) return "morning";
  if (hour < 17) return "afternoon";
  return "evening";
}

function inPart(slot, part) {
  return !part || partOfDay(slot.starts_at) === part;
}

/** Fill a <select> with the parts of the day ("any time" first). */
export function fillPartsOfDay(select) {
  const previous = select.value;
  select.replaceChildren(...PARTS_OF_DAY.map((p) => new Option(t(`search.part.${p || "any"}`), p)));
  select.value = previous || "";
}

/**
 * Render GET /v1/slots results into `container` (appending when `append`).
 * `verb(slot)` is a slot button's first words, or null when nothing may be picked (then the
 * times are listed as text); `onPick(slot, button, point)` goes on to the review.
 */
export function renderResults(container, result, { verb, onPick, query, append = false, part = "" }) {
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
  for (const item of result.items) container.append(pointCard(item, { verb, onPick, query, part }));
}

function slotItem(slot, verb, onPick, point) {
  const when = formatDateTime(slot.starts_at);
  const text = `${when} · ${productName(slot.product)} · ${t("search.free", { n: slot.free })}`;
  const action = verb ? verb(slot) : null;
  if (!action) {
    const note = verb && verb.note ? verb.note(slot) : "";
    return el("li", { class: "slot-text", text: note ? `${text} — ${note}` : text });
  }
  return el(
    "li",
    {},
    el("button", {
      type: "button",
      class: "slot-button",
      "data-slot": slot.slot_id,
      text: `${verb(slot)}: ${text}`,
      "aria-label": `${verb(slot)}: ${text}, ${point.name}`,
      onclick: (e) => onPick(slot, e.currentTarget, point),
    }),
  );
}

async function pointSlots(point, query) {
  const data = await api("GET", `/v1/points/${encodeURIComponent(point.point_id)}/slots`, {
    query: { product: query.product, date_from: query.date_from, date_to: query.date_to },
  });
  return data.slots.filter((s) => s.free > 0);
}

function pointCard(item, { verb, onPick, query, part }) {
  const p = item.point;
  const headingId = `point-${p.point_id}`;
  const facts = [
    t("search.distance", { km: item.distance_km.toFixed(1) }),
    p.accessible ? t("search.accessible") : t("search.not_accessible"),
  ];
  const list = el("ul", { class: "slot-list" });
  const earliest = item.earliest_slots.filter((s) => inPart(s, part));
  if (!part || earliest.length >= Math.min(SHOWN, item.earliest_slots.length)) {
    list.replaceChildren(...earliest.slice(0, SHOWN).map((s) => slotItem(s, verb, onPick, p)));
  } else {
    // The earliest slots are not in the chosen part of the day: ask the point for all of its.
    list.append(el("li", { class: "muted", text: t("common.loading") }));
    pointSlots(p, query)
      .then((slots) => {
        const wanted = slots.filter((s) => inPart(s, part)).slice(0, SHOWN);
        list.replaceChildren(
          ...(wanted.length
            ? wanted.map((s) => slotItem(s, verb, onPick, p))
            : [el("li", { class: "muted", text: t("search.none_in_part") })]),
        );
      })
      .catch(() => list.replaceChildren(el("li", { class: "muted", text: t("error.network") })));
  }
  const dayView = el("div", { class: "day-view", hidden: true });
  const moreButton = el("button", {
    type: "button",
    class: "link-button",
    text: t("search.more_times"),
    "aria-label": `${t("search.more_times")}: ${p.name}`,
    "aria-expanded": "false",
    onclick: async (e) => {
      const button = e.currentTarget;
      if (button.getAttribute("aria-expanded") === "true") {
        dayView.hidden = true;
        button.setAttribute("aria-expanded", "false");
        return;
      }
      await run(button, async () => {
        const slots = await pointSlots(p, query);
        renderDayView(dayView, slots, { verb, onPick, point: p, part });
        dayView.hidden = false;
        button.setAttribute("aria-expanded", "true");
      });
    },
  });
  return el(
    "article",
    { class: "point-card", "aria-labelledby": headingId, "data-point": p.point_id },
    el("h3", { id: headingId, text: p.name }),
    placeBlock(p, p.point_id, { directions: true, phone: true, name: false }),
    el("p", { class: "muted", text: facts.join(" · ") }),
    list,
    moreButton,
    dayView,
  );
}

/** Every free time of one chosen day at a point, in the chosen part of the day. */
function renderDayView(container, slots, { verb, onPick, point, part }) {
  const days = [...new Set(slots.map((s) => dayOf(s.starts_at)))];
  if (!days.length) {
    container.replaceChildren(el("p", { text: t("search.no_more") }));
    return;
  }
  const id = `day-${point.point_id}`;
  const select = el(
    "select",
    { id },
    days.map((d) => {
      const n = slots.filter((s) => dayOf(s.starts_at) === d && inPart(s, part)).length;
      return new Option(`${formatDay(d)} — ${t("search.times", { n })}`, d);
    }),
  );
  const hours = el("p", { class: "muted" });
  const list = el("ul", { class: "slot-list" });
  const show = () => {
    const ofDay = slots.filter((s) => dayOf(s.starts_at) === select.value);
    const times = ofDay.map((s) => formatTime(s.starts_at));
    hours.textContent = t("search.day_hours", { from: times[0], to: times[times.length - 1] });
    const wanted = ofDay.filter((s) => inPart(s, part));
    list.replaceChildren(
      ...(wanted.length
        ? wanted.map((s) => slotItem(s, verb, onPick, point))
        : [el("li", { class: "muted", text: t("search.none_in_part") })]),
    );
  };
  select.addEventListener("change", show);
  const firstWithTimes = days.find((d) => slots.some((s) => dayOf(s.starts_at) === d && inPart(s, part)));
  select.value = firstWithTimes || days[0];
  container.replaceChildren(
    el("label", { for: id, text: t("search.choose_day", { name: point.name }) }),
    select,
    hours,
    list,
  );
  show();
}

/** The query of the search form (postcode normalised to 00-000). */
export function normalisePostcode(value) {
  const m = /^\s*(\d{2})\s*[-\u2010-\u2015\u2212]?\s*(\d{3})\s*$/.exec(value);
  return m ? `${m[1]}-${m[2]}` : null;
}

/** Take a booked seat off the shown results (search's counts trail bookings by seconds). */
export function takeSeat(result, slotIds) {
  if (!result) return;
  const taken = new Set(slotIds);
  for (const item of result.items) {
    for (const slot of item.earliest_slots) {
      if (taken.has(slot.slot_id) && slot.free > 0) {
        slot.free -= 1;
        item.free_seats = Math.max(0, item.free_seats - 1);
      }
    }
    item.earliest_slots = item.earliest_slots.filter((s) => s.free > 0);
  }
}
