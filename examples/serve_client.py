"""Explains the JSON-lines pairs on stdin with a running `spangrad serve`; prints one JSON line
per pair (its explanation, or its error), in order. Usage: serve_client.py [URL] < pairs.jsonl
(with SPANGRAD_API_KEY set when the server wants a key)."""
import json, os, sys, time

import requests

url = sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:8080"
key = os.environ.get("SPANGRAD_API_KEY")
headers = {"Authorization": f"Bearer {key}"} if key else {}
pairs = [json.loads(line) for line in sys.stdin if line.strip()]
per_request = requests.get(f"{url}/v1/model", headers=headers).json()["limits"]["max_pairs_per_request"]
for start in range(0, len(pairs), per_request):
    body = {"pairs": pairs[start:start + per_request]}
    while (answer := requests.post(f"{url}/v1/explain", json=body, headers=headers)).status_code == 429:
        time.sleep(int(answer.headers.get("Retry-After", "1")))  # the queue is full
    answer.raise_for_status()  # other 4xx/5xx: the body says {"error": ..., "field": ...}
    for result in answer.json()["results"]:
        if "index" in result:  # a failure: its place in this request, made global
            result["index"] += start
        print(json.dumps(result, ensure_ascii=False))
