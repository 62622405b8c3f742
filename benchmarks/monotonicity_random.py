"""Monotonicity of the certified eps on random neighbouring configurations (issue 7).

Draws N configurations log-uniformly over sigma 0.3..20, q 1e-7..1 and 1..1e7
steps (delta from {1e-3, 1e-5, 1e-8, 1e-12}) and, for each, a neighbour with
more steps, a larger q and a larger sigma; counts the pairs where the
certified eps steps the wrong way by more than 1e-9 relative, and prints the
first few of each kind.

Usage::

    PYTHONPATH=. python benchmarks/monotonicity_random.py SEED N
"""
import random, math, sys, time
import edgeworth
random.seed(int(sys.argv[1]) if len(sys.argv)>1 else 0)
N=int(sys.argv[2]) if len(sys.argv)>2 else 300
def lu(a,b): return math.exp(random.uniform(math.log(a),math.log(b)))
REL=1e-9
viol={'steps':[], 'q':[], 'sigma':[]}
t0=time.time()
for i in range(N):
    s=lu(0.3,20); q=lu(1e-7,1); n=int(lu(1,1e7)); d=random.choice([1e-3,1e-5,1e-8,1e-12])
    e=edgeworth.epsilon(s,d,n,q)
    n2=n+max(1,int(n*lu(0.001,10))); e2=edgeworth.epsilon(s,d,n2,q)
    if e> e2*(1+REL): viol['steps'].append((s,q,n,n2,d,e,e2))
    q2=min(1,q*lu(1.0001,10)); e3=edgeworth.epsilon(s,d,n,q2)
    if e> e3*(1+REL): viol['q'].append((s,q,q2,n,d,e,e3))
    s2=s*lu(1.0001,3); e4=edgeworth.epsilon(s2,d,n,q)
    if e4> e*(1+REL): viol['sigma'].append((s,s2,q,n,d,e,e4))
for k,v in viol.items():
    print(k,len(v))
    for x in v[:8]: print('   ',x, 'qn=%.3g'%(x[1]*x[3] if k!='steps' else x[1]*x[2]))
print('time',time.time()-t0)
