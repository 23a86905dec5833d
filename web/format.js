// Numbers, sizes, rates, durations and times as people read them.

const nf1 = new Intl.NumberFormat(undefined, { maximumFractionDigits: 1 });
const nf2 = new Intl.NumberFormat(undefined, { maximumFractionDigits: 2 });
const nf0 = new Intl.NumberFormat(undefined, { maximumFractionDigits: 0 });
const dateTime = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "medium" });
const shortTime = new Intl.DateTimeFormat(undefined, {
  month: "short",
  day: "numeric",
  hour: "2-digit",
  minute: "2-digit",
});

const BYTES = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
const SI = ["", "k", "M", "G", "T", "P"];

export function isNum(v) {
  return typeof v === "number" && Number.isFinite(v);
}

export function number(v, digits = 2) {
  if (!isNum(v)) return "–";
  const abs = Math.abs(v);
  if (abs !== 0 && (abs >= 1e6 || abs < 0.01)) return v.toPrecision(3);
  return digits === 0 ? nf0.format(v) : digits === 1 ? nf1.format(v) : nf2.format(v);
}

export function percent(v) {
  return isNum(v) ? `${nf1.format(v)} %` : "–";
}

export function bytes(v) {
  if (!isNum(v)) return "–";
  let i = 0;
  let x = Math.abs(v);
  while (x >= 1024 && i < BYTES.length - 1) {
    x /= 1024;
    i++;
  }
  return `${v < 0 ? "-" : ""}${x >= 100 || i === 0 ? nf0.format(x) : nf1.format(x)} ${BYTES[i]}`;
}

export function rate(v) {
  return isNum(v) ? `${bytes(v)}/s` : "–";
}

/** A count with an SI prefix: 1.2k, 3.4M. */
export function si(v, unit = "") {
  if (!isNum(v)) return "–";
  let i = 0;
  let x = Math.abs(v);
  while (x >= 1000 && i < SI.length - 1) {
    x /= 1000;
    i++;
  }
  const text = x >= 100 || (i === 0 && Number.isInteger(x)) ? nf0.format(x) : nf1.format(x);
  return `${v < 0 ? "-" : ""}${text}${SI[i]}${unit ? " " + unit : ""}`;
}

export function seconds(v) {
  if (!isNum(v)) return "–";
  if (Math.abs(v) < 1) return `${nf0.format(v * 1000)} ms`;
  return duration(v * 1000);
}

/** A duration in ms as "3 d 4 h", "5 min", "12 s". */
export function duration(ms) {
  if (!isNum(ms)) return "–";
  const s = Math.round(Math.abs(ms) / 1000);
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min`;
  const h = Math.floor(m / 60);
  if (h < 48) return m % 60 ? `${h} h ${m % 60} min` : `${h} h`;
  const d = Math.floor(h / 24);
  return h % 24 ? `${d} d ${h % 24} h` : `${d} d`;
}

/** "12 s ago", "3 min ago"; "never" for null. */
export function ago(ts, now = Date.now()) {
  if (!isNum(ts)) return "never";
  const diff = now - ts;
  if (diff < 5000) return "just now";
  return `${duration(diff)} ago`;
}

/** A moment (ms since the epoch, or an ISO 8601 text) as local date and time. */
export function when(ts) {
  if (typeof ts === "string" && ts) {
    const d = new Date(ts);
    return Number.isNaN(d.getTime()) ? ts : dateTime.format(d);
  }
  return isNum(ts) ? dateTime.format(new Date(ts)) : "–";
}

export function whenShort(ts) {
  return isNum(ts) ? shortTime.format(new Date(ts)) : "–";
}

/** A value in the unit a chart or table declares. */
export function byUnit(unit, v) {
  switch (unit) {
    case "percent":
      return percent(v);
    case "bytes":
      return bytes(v);
    case "bytes/s":
      return rate(v);
    case "seconds":
      return seconds(v);
    case "celsius":
      return isNum(v) ? `${nf1.format(v)} °C` : "–";
    case "rpm":
      return isNum(v) ? `${nf0.format(v)} rpm` : "–";
    case "/s":
      return isNum(v) ? `${si(v)}/s` : "–";
    case "days":
      return isNum(v) ? `${nf1.format(v)} d` : "–";
    default:
      return si(v);
  }
}

/** A compact axis label for a unit (no spaces, short). */
export function axis(unit, v) {
  if (!isNum(v)) return "";
  switch (unit) {
    case "percent":
      return `${nf0.format(v)}%`;
    case "bytes":
      return bytes(v).replace(" ", "");
    case "bytes/s":
      return bytes(v).replace(" ", "") + "/s";
    case "seconds":
      return seconds(v).replace(" ", "");
    case "celsius":
      return `${nf0.format(v)}°`;
    default:
      return si(v);
  }
}
