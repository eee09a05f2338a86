"""Makes tracking links for bench/run.sh: marks 200 mailable persons as test persons, sends
them a step's test mail through the running service, and writes the open-pixel and
click-redirect paths of the messages written to the outbox, one file each.

usage: tracking_links.py BASE_URL TOKEN OUTBOX PIXELS_FILE CLICKS_FILE
"""
import email
import json
import pathlib
import re
import sys
import urllib.request

base, token, outbox, pixels_file, clicks_file = sys.argv[1:6]


def call(method, path, body=None):
    req = urllib.request.Request(
        base + path,
        method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req) as r:
        return json.loads(r.read() or "null")


ids = [p["id"] for p in call("POST", "/api/v1/queries/run", {
    "conditions": {"field": "mailable", "op": "eq", "value": True},
    "per_page": 200, "columns": ["id"]})["items"]]
for i in ids:
    call("PATCH", f"/api/v1/persons/{i}", {"is_test_person": True})
campaign = call("POST", "/api/v1/campaigns", {"name": "tracking benchmark"})
step = call("POST", "/api/v1/campaign-steps", {
    "campaign_id": campaign["id"], "name": "tracking benchmark",
    "from_email": "nieuws@example.org", "subject": "Hallo {{ person.first_name }}",
    "html": "<p>Hallo</p><p><a href=\"https://example.org/a\">a</a> "
            "<a href=\"https://example.org/b\">b</a></p>"
            "<p><a href=\"{{ preferences_url }}\">voorkeuren</a></p>"})
for k in range(0, len(ids), 50):
    call("POST", f"/api/v1/campaign-steps/{step['id']}/test-mail", {"person_ids": ids[k:k + 50]})
pixels, clicks = [], []
for f in sorted(pathlib.Path(outbox, "test").glob("*.eml")):
    msg = email.message_from_bytes(f.read_bytes())
    html = next(p for p in msg.walk() if p.get_content_type() == "text/html").get_payload(decode=True).decode()
    pixels += re.findall(r'src="https?://[^/"]+(/r/o/[^"]+)"', html)
    clicks += re.findall(r'href="https?://[^/"]+(/r/c/[^"]+)"', html)
if not pixels or not clicks:
    sys.exit("no tracking links in the test mails")
pathlib.Path(pixels_file).write_text("\n".join(pixels) + "\n")
pathlib.Path(clicks_file).write_text("\n".join(clicks) + "\n")
print(f"{len(pixels)} pixel and {len(clicks)} click links", file=sys.stderr)
