#!/usr/bin/env python3
"""Cost of the `outbox` CLI against the consumed ledger's history.

A new process reads a parent's whole ledger once; this measures what that
costs. For each history H in 0, 10 000, 100 000 and each binary given, it
makes a data root under target/cli-hist, warms a parent with one commit and
drain, appends H marks to its v2 ledger, then times 11 interleaved rounds
of `commit` + `drain` (one record) per binary and prints the medians.

Usage: python3 bench/cli_history.py target/release/outbox [OTHER_BINARY...]
"""
import subprocess, time, statistics, os, json, sys, shutil
bins = sys.argv[1:]
def run(b, args, root):
    s=time.perf_counter(); subprocess.run([b]+args+['--root',root],check=True,stdout=subprocess.DEVNULL,stderr=subprocess.DEVNULL); return (time.perf_counter()-s)*1e3
base=os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'target', 'cli-hist')
shutil.rmtree(base, ignore_errors=True)
for h in [0,10000,100000]:
    roots={}
    for b in bins:
        root=f'{base}/{os.path.basename(b)}-{h}'
        run(b,['commit','--parent','p','--child','warm','--finished','--status','success','--summary','w'],root)
        run(b,['drain','--parent','p'],root)
        if h:
            led=f'{root}/runtime/consumed-turns/p.jsonl'
            now=int(time.time())
            with open(led,'a') as f:
                f.write('{"prune":%d}\n'%now)
                for i in range(h): f.write(json.dumps(["hist-%06d@%016x"%(i,i),now])+"\n")
        roots[b]=root
    c={b:[] for b in bins}; d={b:[] for b in bins}
    for i in range(11):
        for b in (bins if i%2==0 else bins[::-1]):
            c[b].append(run(b,['commit','--parent','p','--child',f'c{i}','--finished','--status','success','--summary',f's{i}'],roots[b]))
            d[b].append(run(b,['drain','--parent','p'],roots[b]))
    for b in bins:
        print(f"history {h:>6}: {os.path.basename(b):12} commit {statistics.median(c[b]):7.2f} ms  drain of 1 {statistics.median(d[b]):7.2f} ms")
