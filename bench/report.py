"""Turns the rows that bench/run.sh collected into one table, and keeps bench/RESULTS.md
current: one section per data size, replaced by each run of that size."""

import os
import re
import sys
import subprocess
import datetime

rows_file, size, results = sys.argv[1], sys.argv[2], sys.argv[3]

rows = []
with open(rows_file) as f:
    for line in f:
        if line.startswith("bench-row\t"):
            parts = line.rstrip("\n").split("\t")[1:]
            rows.append(parts + [""] * (5 - len(parts)))


def sh(cmd):
    try:
        return subprocess.run(cmd, shell=True, capture_output=True, text=True).stdout.strip()
    except OSError:
        return "?"


machine = "{} cores ({}), {} RAM, {}".format(
    sh("nproc"),
    sh("lscpu | sed -n 's/^Model name:[ ]*//p' | head -1") or "unknown CPU",
    sh("free -h | awk '/^Mem:/ {print $2}'"),
    sh(". /etc/os-release && echo $PRETTY_NAME"),
)
header = "| figure | engine | median | reference (same run) | ratio |\n|---|---|---|---|---|"
table = header + "\n" + "\n".join("| " + " | ".join(r[:5]) + " |" for r in rows)
section = (
    f"<!-- size:{size} -->\n"
    f"## {int(size):,} persons\n\n"
    f"Taken {datetime.date.today().isoformat()} at commit `{sh('git rev-parse --short HEAD')}` on "
    f"{machine}.\n"
    f"Reproduce: `bench/run.sh --size {size}`.\n\n"
    f"{table}\n"
    f"<!-- end size:{size} -->\n"
)
print()
print(table)

intro = (
    "# Benchmark results\n\n"
    "Written by `bench/run.sh`, never by hand: each run replaces the section of its data size.\n"
    "Medians over several runs; references are measured in the same run. API figures come from\n"
    "`wrk` with 2 threads and 4 connections for 10 s (Debian's wrk has no fixed-rate mode).\n\n"
)
text = open(results).read() if os.path.exists(results) else intro
pattern = re.compile(rf"<!-- size:{size} -->.*?<!-- end size:{size} -->\n", re.S)
if pattern.search(text):
    text = pattern.sub(lambda _: section, text)
else:
    text = text.rstrip("\n") + "\n\n" + section
with open(results, "w") as f:
    f.write(text)
