#!/usr/bin/env python3
#
# merge_shards.py: scales two REAL shard results of a short run (`gapless run --shards 2 ...`) to
# what each of N shards of a one-hour run holds, for `benches/merge.sh`.
#
#   python3 benches/merge_shards.py --real shard0.json shard1.json --out DIR --case healthy|worst
#       [--shards 100] [--qps 1000] [--lone-minutes 30] [--seed 1] [--line]
#
# Written as `--json` writes a result (indented), or with --line as the one compact line a shard
# without --json prints on stdout (what `kubectl logs ... | gapless merge -` reads).
#
# Every result keeps the real shards' plan (URL, method, timeout, ok codes, start) with the
# benchmark's --qps and --shards, and distinct indices 0..N-1, so all pass merge's plan checks.
# What a one-hour shard holds (src/measure/timeline.rs, src/measure/gaps.rs, stalls.rs):
#
# - `load.duration_ms` 3,600,000; a timeline sized to a one-hour run without a `--slot`: 1 s
#   slots would be 3,600, over the cap of 2,048 (MAX_SLOTS), so they merge once to 2 s: 1,800
#   slots of `slot_ms` 2000. Each slot holds the shard's requests of the global schedule
#   (request k at k / qps, shard i sends k mod N == i) with its `codes`, `errors`, and a
#   `latency_us` histogram: a real slot's V2 histogram (picked at random among the real run's
#   slots) with its counts scaled to the slot's responses.
# - `requests`, `codes`, `errors`, connections and the run's three histograms consistent with
#   the slots (the real histograms scaled likewise).
# - healthy: no failure, no window, no stall.
# - worst: 1,000 outages over the hour seen by every shard (clock offsets of a few ms between
#   shards): each begins with a silence (a stall: the target holds requests, which then fail as
#   `closed_before_response`) and goes on with 503s or refused connections. Each shard lists
#   1,000 windows (`first_seq`/`end_seq` on the global order, `windows_total` 1,000, the gaps
#   listed too) and up to 1,000 stalls. One shard (index 37, or the last of fewer shards: a node
#   routing to a dead pod) fails alone for --lone-minutes from minute 10: in that stretch every
#   one of its requests is a merged window of its own, which the merge visits one by one; its
#   other windows are the outages outside the stretch plus one-request flaps, 1,000 in all.
#
# Histograms: HdrHistogram V2 (cookie 0x1c849313, 40-byte header, counts in zig-zag LEB128
# with runs of zeros as negative numbers), base64, uncompressed, as gapless writes them.

import argparse
import base64
import copy
import json
import math
import os
import random
import struct

DURATION_MS = 3_600_000
SLOT_MS = 2000
SLOTS = DURATION_MS // SLOT_MS
WINDOWS = 1000
EVENTS = 1000
LONE = 37
WARMUP_MS = 60_000
COOLDOWN_MS = 60_000


# --- HdrHistogram V2 ------------------------------------------------------------------------


def hist_decode(text):
    raw = base64.b64decode(text)
    header = list(struct.unpack(">IiiiqqD".replace("D", "d"), raw[:40]))
    length = header[1]
    payload = raw[40 : 40 + length]
    counts, i = [], 0
    while i < len(payload):
        value, shift = 0, 0
        for n in range(9):
            byte = payload[i]
            i += 1
            if n == 8:
                value |= byte << shift
                break
            value |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                break
        value = (value >> 1) ^ -(value & 1)
        if value < 0:
            counts.extend([0] * -value)
        else:
            counts.append(value)
    return header, counts


def _leb(value, out):
    z = (value << 1) ^ (value >> 63)
    z &= (1 << 64) - 1
    for n in range(9):
        if n == 8:
            out.append(z & 0xFF)
            return
        if z < 0x80:
            out.append(z)
            return
        out.append((z & 0x7F) | 0x80)
        z >>= 7


def hist_encode(header, counts):
    out = bytearray()
    zeros = 0
    last = max((i for i, c in enumerate(counts) if c), default=-1)
    for c in counts[: last + 1]:
        if c == 0:
            zeros += 1
            continue
        if zeros:
            _leb(-zeros, out) if zeros > 1 else _leb(0, out)
            zeros = 0
        _leb(c, out)
    header = list(header)
    header[1] = len(out)
    head = struct.pack(">Iiiiqqd", *header)
    return base64.b64encode(head + bytes(out)).decode()


def scaled(hist, total):
    """The histogram `(header, counts)` with its counts scaled to sum to `total`."""
    header, counts = hist
    have = sum(counts)
    if total <= 0 or have == 0:
        return None
    new = [c * total // have for c in counts]
    rest = total - sum(new)
    # The remainder to the largest buckets, so the shape holds.
    for i in sorted(range(len(counts)), key=lambda i: -counts[i])[:rest]:
        new[i] += 1
    rest = total - sum(new)
    if rest:
        new[max(range(len(counts)), key=lambda i: counts[i])] += rest
    return hist_encode(header, new)


# --- the global schedule --------------------------------------------------------------------


def members_below(i, n, z):
    """Shard i's requests (k mod n == i) below z (as src/merge.rs counts them)."""
    return (z - i - 1) // n + 1 if z > i else 0


def first_member_at(i, n, k):
    """The first request of shard i at or after k."""
    return k + ((i - k) % n)


class Schedule:
    def __init__(self, qps, shards):
        self.qps, self.n = qps, shards
        total = qps * DURATION_MS / 1000
        assert total == int(total), "qps × 3,600 s must be whole"
        self.total = int(total)

    def seq(self, ms):
        """The first request due at or after `ms`."""
        return min(self.total, math.ceil(ms * self.qps / 1000))

    def ms(self, k):
        return k * 1000 / self.qps

    def slot_range(self, s):
        return self.seq(s * SLOT_MS), self.seq((s + 1) * SLOT_MS)


# --- windows and stalls ---------------------------------------------------------------------


def outages(rng):
    """The hour's outages: (start ms, length ms, silence ms, kind)."""
    spacing = DURATION_MS / EVENTS
    out = []
    for e in range(EVENTS):
        length = rng.uniform(300, 1500)
        start = (e + 0.5 + rng.uniform(-0.25, 0.25)) * spacing
        silence = max(220.0, rng.uniform(0.2, 0.6) * length)
        out.append((start, length, silence, "503" if e % 2 == 0 else "connect_refused"))
    return out


def shard_windows(i, sched, events, rng, offset, lone_ms):
    """Shard i's failure windows: [first, end, {class: n}, stall or None]."""
    n = sched.n
    windows = []
    lone = None
    if i == min(LONE, n - 1) and lone_ms:
        a = first_member_at(i, n, sched.seq(600_000))
        b = first_member_at(i, n, sched.seq(600_000 + lone_ms))
        lone = (a, b)
    for start, length, silence, kind in events:
        t0 = start + offset + rng.uniform(-1, 1)
        t1 = t0 + length + rng.uniform(-1, 1)
        first = first_member_at(i, n, sched.seq(t0))
        end = first_member_at(i, n, sched.seq(t1))
        if end >= sched.total:
            continue
        end = max(end, first + n)
        if lone and not (end <= lone[0] or first >= lone[1]):
            continue
        failed = members_below(i, n, end) - members_below(i, n, first)
        held = min(failed, members_below(i, n, sched.seq(t0 + silence)) - members_below(i, n, first))
        classes = {"closed_before_response": held, kind: failed - held}
        stall = (t0, t0 + silence, held)
        windows.append([first, end, classes, stall])
    if lone:
        a, b = lone
        windows.append([a, b, {"connect_refused": members_below(i, n, b) - members_below(i, n, a)}, None])
        # One-request flaps outside the stretch, away from the outages, to 1,000 windows.
        taken = sorted((w[0], w[1]) for w in windows)
        while len(windows) < WINDOWS:
            k = first_member_at(i, n, rng.randrange(0, sched.total - 2 * n))
            near = any(f - 2 * n <= k < e + 2 * n for f, e in taken)
            if near:
                continue
            windows.append([k, k + n, {"connect_refused": 1}, None])
            taken.append((k, k + n))
        windows.sort(key=lambda w: w[0])
    return windows[:WINDOWS]


# --- one shard's result ---------------------------------------------------------------------


def shard_result(i, args, templates, pool, sched, events, rng):
    template = templates[0] if i == 0 else templates[1]
    r = copy.deepcopy(template)
    n = sched.n
    count = members_below(i, n, sched.total)
    offset = rng.uniform(-3, 3)  # this node's clock against the others, ms
    lone_ms = args.lone_minutes * 60_000
    windows = shard_windows(i, sched, events, rng, offset, lone_ms) if args.case == "worst" else []

    # The timeline: every slot's requests, the windows' failures placed in their slots.
    slots = []
    for s in range(SLOTS):
        lo, hi = sched.slot_range(s)
        slots.append({"total": members_below(i, n, hi) - members_below(i, n, lo), "classes": {}})
    for first, end, classes, _ in windows:
        # Share the window's classes out over the slots it spans, in order of its requests.
        order = [(c, k) for c, k in classes.items() if k]
        at = 0
        s = int(sched.ms(first) // SLOT_MS)
        while s < SLOTS:
            lo, hi = sched.slot_range(s)
            if lo >= end:
                break
            here = members_below(i, n, min(hi, end)) - members_below(i, n, max(lo, first))
            j0, j1 = at, at + here
            pos = 0
            for c, k in order:
                got = max(0, min(j1, pos + k) - max(j0, pos))
                pos += k
                if got:
                    slots[s]["classes"][c] = slots[s]["classes"].get(c, 0) + got
            at = j1
            s += 1

    codes, errors = {"200": 0}, {}
    timeline = []
    responses = 0
    for s, slot in enumerate(slots):
        failed = sum(slot["classes"].values())
        ok = slot["total"] - failed
        c = {"200": ok} if ok else {}
        e = {}
        for cls, k in sorted(slot["classes"].items()):
            if cls.isdigit():
                c[cls] = c.get(cls, 0) + k
            else:
                e[cls] = k
        for k, v in c.items():
            codes[k] = codes.get(k, 0) + v
        for k, v in e.items():
            errors[k] = errors.get(k, 0) + v
        answered = sum(c.values())
        responses += answered
        real = rng.choice(pool)
        timeline.append(
            {
                "t_ms": float(s * SLOT_MS),
                "ok": ok,
                "failed": failed,
                "codes": dict(sorted(c.items(), key=lambda kv: int(kv[0]))),
                "errors": e,
                "p50_ms": real["p50_ms"] if answered else None,
                "p99_ms": real["p99_ms"] if answered else None,
                "versions": {},
                "latency_us": scaled(real["hist"], answered) if answered else None,
            }
        )
    failed = sum(x["failed"] for x in timeline)
    ok = count - failed
    codes = {k: v for k, v in codes.items() if v}

    # Windows as the shard lists them (its gaps too: with no merge distance every window is one).
    step = templates[0]["steps"][0]["name"] if templates[0]["steps"] else None

    def during(ms):
        """The steps a shard lists for a window or stall: shard 0 ran the rollout."""
        inside = WARMUP_MS <= ms < DURATION_MS - COOLDOWN_MS
        return [step] if i == 0 and step and inside else []

    entries = []
    for first, end, classes, _ in windows:
        f = members_below(i, n, end) - members_below(i, n, first)
        refused = classes.get("connect_refused", 0)
        start_ms = round(sched.ms(first) + offset + 0.3, 3)
        end_ms = round(sched.ms(end) + offset + 0.3, 3)
        entries.append(
            {
                "start_ms": start_ms,
                "end_ms": end_ms,
                "start_uncertainty_ms": round(n * 1000 / args.qps, 3),
                "end_uncertainty_ms": round(n * 1000 / args.qps, 3),
                "duration_ms": round(end_ms - start_ms, 3),
                "failed": f,
                "ok": 0,
                "codes": {k: v for k, v in classes.items() if k.isdigit() and v},
                "errors": {k: v for k, v in sorted(classes.items()) if not k.isdigit() and v},
                "failed_on_new_connections": refused,
                "failed_on_reused_connections": f - refused,
                "steps": during(start_ms),
                "after_step": None,
                "open": False,
                "first_seq": first,
                "end_seq": end,
            }
        )
    stalls = []
    for first, end, classes, stall in windows:
        if stall is None:
            continue
        t0, t1, held = stall
        stalls.append(
            {
                "start_ms": round(t0, 3),
                "end_ms": round(t1, 3),
                "duration_ms": round(t1 - t0, 3),
                "held": 0,
                "failed": held,
                "connect_timeouts": 0,
                "unanswered_new": 0,
                "unanswered_reused": 0,
                "steps": during(t0),
                "after_step": None,
                "open": False,
            }
        )
    stalls = stalls[:1000]

    # The whole run.
    r["started_at_unix_ms"] = templates[0]["started_at_unix_ms"]
    r["elapsed_ms"] = DURATION_MS + round(rng.uniform(0.5, 3.0), 3)
    r["actual_qps"] = round(count / DURATION_MS * 1000, 3)
    load = r["load"]
    load.update(
        qps=float(args.qps),
        duration_ms=float(DURATION_MS),
        warmup_ms=float(WARMUP_MS),
        cooldown_ms=float(COOLDOWN_MS),
        slot_ms=float(SLOT_MS),
        slot_requested_ms=None,
    )
    late = sum(s[3][2] for s in windows if s[3]) if windows else 0
    r["requests"] = {
        "total": count,
        "ok": ok,
        "failed": failed,
        "late": late,
        "unsent": 0,
        "interrupted": 0,
        "body_bytes": 3 * ok,
    }
    r["codes"] = dict(sorted(codes.items(), key=lambda kv: int(kv[0])))
    r["errors"] = dict(sorted(errors.items()))
    r["errors_by_connection"] = {
        k: {"new": v, "reused": 0} if k == "connect_refused" else {"new": 0, "reused": v}
        for k, v in r["errors"].items()
    }
    samples = {
        "connect_refused": "Connection refused (os error 111)",
        "closed_before_response": "connection closed before the response",
    }
    r["error_samples"] = {k: samples.get(k, k) for k in r["errors"]}
    refused = errors.get("connect_refused", 0)
    r["connections"] = {
        "opened": 16 + 16 * len(windows),
        "connect_failures": refused,
        "failed_on_new_connections": refused,
        "failed_on_reused_connections": failed - refused,
    }
    h = templates[i != 0]["histograms"]
    r["histograms"] = {
        "latency_us": scaled(hist_decode(h["latency_us"]), responses),
        "service_us": scaled(hist_decode(h["service_us"]), responses),
        "lateness_us": scaled(hist_decode(h["lateness_us"]), count),
    }
    for key, total in (("latency_ms", responses), ("service_time_ms", responses), ("lateness_ms", count)):
        r[key]["count"] = total
    r["timeline"] = timeline
    phases = (
        [("warmup", 0, WARMUP_MS), ("steps", WARMUP_MS, DURATION_MS - COOLDOWN_MS), ("cooldown", DURATION_MS - COOLDOWN_MS, DURATION_MS)]
        if i == 0
        else [("load", 0, DURATION_MS)]
    )
    r["phases"] = []
    for name, a, b in phases:
        inside = [s for s in timeline if a <= s["t_ms"] < b]
        pok = sum(s["ok"] for s in inside)
        pfailed = sum(s["failed"] for s in inside)
        r["phases"].append(
            {"name": name, "start_ms": float(a), "end_ms": float(b), "requests": pok + pfailed, "ok": pok, "failed": pfailed, "versions": {}}
        )
    if i == 0 and r["steps"]:
        r["steps"][0].update(start_ms=float(WARMUP_MS) + 2.1, end_ms=float(DURATION_MS - COOLDOWN_MS) - 0.4)
    r["windows"] = entries
    r["windows_total"] = len(entries)
    r["gaps"] = entries
    r["gaps_total"] = len(entries)
    longest = max((w["duration_ms"] for w in entries), default=None)
    r["longest_gap_ms"] = longest
    r["total_gap_ms"] = round(sum(w["duration_ms"] for w in entries), 3)
    r["stalls"] = stalls
    r["stalls_total"] = len(stalls)
    r["longest_stall_ms"] = max((s["duration_ms"] for s in stalls), default=template["longest_stall_ms"])
    r["versions"] = {}
    r["cutover_ms"] = None
    r["mixed_window"] = None
    r["slow_windows"] = []
    if not windows:
        r["hints"] = []
    r["command_line"] = [
        a if a != template["command_line"][template["command_line"].index("-d") + 1] else "1h"
        for a in template["command_line"]
    ]
    r["shard"] = {
        "index": i,
        "count": n,
        "label": f"node-{i}",
        "start_at_unix_ms": templates[0]["shard"]["start_at_unix_ms"],
    }
    passed = failed == 0
    line = (
        f"PASS: {count} requests, none failed"
        if passed
        else f"FAIL: {failed} of {count} requests failed in {len(entries)} windows"
    )
    r["verdict"].update(passed=passed, exit_code=0 if passed else 1, line=line, reasons=[] if passed else [line[6:]])
    return r, failed


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--real", nargs=2, required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--case", choices=["healthy", "worst"], required=True)
    p.add_argument("--shards", type=int, default=100)
    p.add_argument("--qps", type=int, default=1000)
    p.add_argument("--lone-minutes", type=float, default=30)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--line", action="store_true", help="one compact line per result, as a shard prints it on stdout")
    args = p.parse_args()
    if not 0 <= args.lone_minutes <= 49:
        p.error("--lone-minutes: the stretch begins at minute 10 and must end before the hour does")
    templates = [json.load(open(f)) for f in args.real]
    assert [t["shard"]["index"] for t in templates] == [0, 1], "the real shards 0 and 1, in order"
    pool = [
        {"hist": hist_decode(s["latency_us"]), "p50_ms": s["p50_ms"], "p99_ms": s["p99_ms"]}
        for t in templates
        for s in t["timeline"]
        if s.get("latency_us")
    ]
    rng = random.Random(args.seed)
    sched = Schedule(args.qps, args.shards)
    events = outages(rng)
    os.makedirs(args.out, exist_ok=True)
    total = failed = 0
    for i in range(args.shards):
        r, f = shard_result(i, args, templates, pool, sched, events, rng)
        with open(os.path.join(args.out, f"shard-{i:03}.json"), "w") as out:
            if args.line:
                json.dump(r, out, separators=(",", ":"))
            else:
                json.dump(r, out, indent=2)
            out.write("\n")
        total += r["requests"]["total"]
        failed += f
    print(json.dumps({"total": total, "failed": failed, "shards": args.shards, "real_histograms": len(pool)}))


if __name__ == "__main__":
    main()
