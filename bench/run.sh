#!/usr/bin/env bash
# Every headline figure beside its reference, in one table, for one data size.
#
#   bench/run.sh                   # quick: 10,000 persons, both engines
#   bench/run.sh --size 1000000    # the headline
#   bench/run.sh --backends sqlite # one engine
#
# PostgreSQL comes from MAILBAAR_TEST_POSTGRES_URL (default: the local server). The table
# is printed and written to bench/RESULTS.md (the section of this size). Adding a figure:
# make a bench print a line `bench-row<TAB>figure<TAB>engine<TAB>median<TAB>reference<TAB>ratio`
# and run it below.
set -euo pipefail
cd "$(dirname "$0")/.."

size=10000
backends=sqlite,postgres
while [ $# -gt 0 ]; do
    case "$1" in
        --size) size="$2"; shift 2 ;;
        --backends) backends="$2"; shift 2 ;;
        *) echo "usage: bench/run.sh [--size N] [--backends sqlite,postgres]" >&2; exit 2 ;;
    esac
done
export MAILBAAR_TEST_POSTGRES_URL="${MAILBAAR_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
export MAILBAAR_BENCH_PERSONS="$size" MAILBAAR_BENCH_BACKENDS="$backends"
command -v wrk >/dev/null || { echo "bench/run.sh needs wrk (apt-get install wrk)" >&2; exit 1; }

work=$(mktemp -d)
rows="$work/rows"
: > "$rows"
server=""
cleanup() {
    [ -n "$server" ] && kill "$server" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
step() { printf "\n== [%ss] %s\n" "$SECONDS" "$*" >&2; }

step "building"
cargo build --release --quiet -p mailbaar-api --bin mailbaar
cargo bench --quiet --no-run -p mailbaar-query -p mailbaar-consent -p mailbaar-profiles -p mailbaar-render -p mailbaar-campaigns -p mailbaar-delivery -p mailbaar-imports 2>/dev/null

step "query, consent and profile benchmarks ($size persons)"
cargo bench --quiet -p mailbaar-query --bench newsletter | tee -a "$rows" >&2
cargo bench --quiet -p mailbaar-consent --bench current_state | tee -a "$rows" >&2
cargo bench --quiet -p mailbaar-profiles --bench recalculate | tee -a "$rows" >&2
cargo bench --quiet -p mailbaar-campaigns --bench prepare | tee -a "$rows" >&2
cargo bench --quiet -p mailbaar-imports --bench import | tee -a "$rows" >&2

step "SMTP delivery to smtp-sink beside smtp-source"
if command -v smtp-sink >/dev/null && command -v smtp-source >/dev/null; then
    MAILBAAR_BENCH_RECIPIENTS="${MAILBAAR_BENCH_RECIPIENTS:-100000}" \
        cargo bench --quiet -p mailbaar-delivery --bench deliver | tee -a "$rows" >&2
else
    echo "skipped: SMTP delivery needs smtp-sink and smtp-source (apt-get install postfix)" >&2
fi

step "rendering"
summary=$(cargo bench --quiet -p mailbaar-render --bench render 2>/dev/null | grep '^summary')
echo "$summary" >&2
python3 - "$rows" "$summary" <<'PY'
import re, sys
s = sys.argv[2]
rate = lambda name: float(re.search(name + r": (\d+) msg/s", s).group(1))
ref = rate("lettre reference")
with open(sys.argv[1], "a") as f:
    for kind in ("tracked", "untracked"):
        f.write(f"bench-row\trendering: complete {kind} messages per second (30 KB newsletter, one core)\t-\t{rate(kind):,.0f} msg/s\t{ref:,.0f} msg/s (lettre's MessageBuilder)\t{rate(kind) / ref:.2f}×\n")
PY

bin=target/release/mailbaar
for backend in ${backends//,/ }; do
    step "API under wrk on $backend"
    case "$backend" in
        sqlite) url="sqlite://$work/bench.db" ;;
        postgres)
            db="mailbaar_bench_$$"
            psql -q "$MAILBAAR_TEST_POSTGRES_URL" -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db"
            url="${MAILBAAR_TEST_POSTGRES_URL%/*}/$db" ;;
    esac
    out=$(MAILBAAR_DATABASE_URL="$url" "$bin" demo-data --persons "$size" --seed 2026 | tail -1)
    echo "$out" >&2
    rate=$(sed -n 's/.*(\([0-9]*\) rows\/s).*/\1/p' <<<"$out")
    printf 'bench-row\tdemo data bulk write (persons and histories)\t%s\t%s rows/s\t-\t-\n' "$backend" "$rate" >> "$rows"
    MAILBAAR_DATABASE_URL="$url" "$bin" profiles recalculate >&2
    token="mb_bench_$$"
    rm -rf "$work/outbox"
    MAILBAAR_DATABASE_URL="$url" MAILBAAR_LISTEN=127.0.0.1:18080 MAILBAAR_ADMIN_TOKEN="$token" \
        MAILBAAR_PUBLIC_URL=http://127.0.0.1:18080 MAILBAAR_OUTBOX="$work/outbox" \
        MAILBAAR_LOG=warn "$bin" serve &
    server=$!
    for _ in $(seq 100); do curl -sf http://127.0.0.1:18080/healthz >/dev/null && break; sleep 0.1; done
    python3 bench/tracking_links.py http://127.0.0.1:18080 "$token" "$work/outbox" \
        "$work/pixels" "$work/clicks"
    for target in card query pixel click; do
        case "$target" in
            card|query) script="bench/$target.lua"; paths="" ;;
            pixel) script=bench/paths.lua; paths="$work/pixels" ;;
            click) script=bench/paths.lua; paths="$work/clicks" ;;
        esac
        BENCH_PERSONS="$size" BENCH_TOKEN="$token" BENCH_PATHS="$paths" \
            wrk -t2 -c4 -d10s --latency -s "$script" http://127.0.0.1:18080 > "$work/wrk" 2>&1
        python3 - "$work/wrk" "$rows" "$backend" "$target" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
def ms(v):
    n, unit = float(re.match(r"[\d.]+", v).group()), re.sub(r"[\d.]", "", v)
    return n * {"us": 0.001, "ms": 1, "s": 1000, "m": 60000}[unit]
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
p50 = ms(re.search(r"\s50%\s+(\S+)", text).group(1))
p99 = ms(re.search(r"\s99%\s+(\S+)", text).group(1))
errors = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
if errors:
    sys.exit(f"{sys.argv[4]}: {errors.group(1)} failed requests\n{text}")
name = {"card": "GET /api/v1/persons/{id}/card", "query": "POST /api/v1/queries/run (newsletter query)",
        "pixel": "GET /r/o/{token} (open pixel, 200 messages)",
        "click": "GET /r/c/{token} (click redirect, 400 links)"}[sys.argv[4]]
with open(sys.argv[2], "a") as f:
    f.write(f"bench-row\t{name}\t{sys.argv[3]}\t{rps:,.0f} req/s, p50 {p50:.2f} ms, p99 {p99:.2f} ms\t-\t-\n")
PY
    done
    kill "$server"; wait "$server" 2>/dev/null || true; server=""
    if [ "$backend" = postgres ]; then
        psql -q "$MAILBAAR_TEST_POSTGRES_URL" -c "DROP DATABASE IF EXISTS $db"
    fi
done

python3 bench/report.py "$rows" "$size" bench/RESULTS.md
