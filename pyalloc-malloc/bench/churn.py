# A Python workload of small objects for pyalloc-malloc/bench/compare.sh: 200,000 JSON
# records dumped and parsed back, and a dict of 300,000 entries half emptied. Run it with
# PYTHONMALLOC=malloc so that every object goes through malloc.
import json
data = [{"id": i, "name": "item-%d" % i, "tags": ["a", "b", str(i % 7)], "v": i * 0.5} for i in range(200000)]
text = json.dumps(data)
back = json.loads(text)
assert back == data
d = {}
for i in range(300000):
    d[str(i)] = (i, [i] * 3)
for i in range(0, 300000, 2):
    del d[str(i)]
print(len(text), len(d))
