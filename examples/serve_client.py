"""Explains the JSON-lines pairs on stdin with a running `spangrad serve`; prints one JSON line
per pair (its explanation, or its error), in order. Usage: serve_client.py [URL] < pairs.jsonl"""
import json
import sys

import requests

url = sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:8080"
pairs = [json.loads(line) for line in sys.stdin if line.strip()]
answer = requests.post(f"{url}/v1/explain", json={"pairs": pairs}, timeout=600)
answer.raise_for_status()  # 4xx/5xx: the body says {"error": ..., "field": ...}
for result in answer.json()["results"]:
    print(json.dumps(result, ensure_ascii=False))
