// "Add to calendar": an iCalendar file (RFC 5545) made in the browser from the booked visits.
// One VEVENT a visit, times in UTC, CRLF line ends, long lines folded at 75 octets, text
// escaped; a UID from the appointment id so that importing the file again updates, not
// duplicates. Plain ES module, no dependencies.

const encoder = new TextEncoder();

/** Escape a TEXT value (RFC 5545 3.3.11). */
export function escapeText(value) {
  return String(value ?? "")
    .replace(/\\/g, "\\\\")
    .replace(/;/g, "\\;")
    .replace(/,/g, "\\,")
    .replace(/\r?\n/g, "\\n");
}

/** Fold a content line into pieces of at most 75 octets (never inside a UTF-8 character). */
export function fold(line) {
  const parts = [];
  let current = "";
  let size = 0;
  for (const ch of line) {
    const n = encoder.encode(ch).length;
    const limit = parts.length ? 74 : 75; // continuation lines start with a space
    if (size + n > limit) {
      parts.push(current);
      current = "";
      size = 0;
    }
    current += ch;
    size += n;
  }
  parts.push(current);
  return parts.join("\r\n ");
}

/** 20261203T070000Z */
export function utcStamp(date) {
  return new Date(date).toISOString().replace(/[-:]/g, "").replace(/\.\d{3}/, "");
}

/**
 * events: [{uid, start (Date or ISO), minutes, summary, location, description, lat, lon, url}]
 * Returns the file's text.
 */
export function calendarFile(events, { now = new Date(), name = "e-Rejestracja" } = {}) {
  const lines = [
    "BEGIN:VCALENDAR",
    "VERSION:2.0",
    "PRODID:-//e-Rejestracja//web apps//PL",
    "CALSCALE:GREGORIAN",
    "METHOD:PUBLISH",
    `X-WR-CALNAME:${escapeText(name)}`,
  ];
  for (const e of events) {
    const start = new Date(e.start);
    const end = new Date(start.getTime() + (e.minutes || 15) * 60000);
    lines.push(
      "BEGIN:VEVENT",
      `UID:${e.uid}`,
      `DTSTAMP:${utcStamp(now)}`,
      `DTSTART:${utcStamp(start)}`,
      `DTEND:${utcStamp(end)}`,
      `SUMMARY:${escapeText(e.summary)}`,
    );
    if (e.location) lines.push(`LOCATION:${escapeText(e.location)}`);
    if (Number.isFinite(Number(e.lat)) && Number.isFinite(Number(e.lon)) && e.lat !== undefined) {
      lines.push(`GEO:${Number(e.lat).toFixed(6)};${Number(e.lon).toFixed(6)}`);
    }
    if (e.description) lines.push(`DESCRIPTION:${escapeText(e.description)}`);
    if (e.url) lines.push(`URL:${e.url}`);
    lines.push(
      "BEGIN:VALARM",
      "ACTION:DISPLAY",
      `DESCRIPTION:${escapeText(e.summary)}`,
      "TRIGGER:-PT2H",
      "END:VALARM",
      "END:VEVENT",
    );
  }
  lines.push("END:VCALENDAR");
  return lines.map(fold).join("\r\n") + "\r\n";
}

/** A link target for the file (a data: URL: nothing is uploaded, nothing kept). */
export function calendarHref(text) {
  return `data:text/calendar;charset=utf-8,${encodeURIComponent(text)}`;
}
