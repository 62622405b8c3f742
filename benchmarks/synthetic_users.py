"""Writes SST-2's training sentences with a synthetic user column, for user-level fine-tuning runs.

SST-2 has no authors.  This gives the first N sentences to users in file order, user u writing a run of
n_u consecutive sentences with n_u drawn from a geometric law of mean MEAN (seeded), so that users hold
1 to a few dozen examples each, as in the user-level experiments of Charles et al. (arXiv 2407.07737).

    python benchmarks/synthetic_users.py --out /tmp/sst2_users.tsv [--limit 4000] [--mean 5] [--seed 0]
    edgeworth finetune --train-file /tmp/sst2_users.tsv --privacy-unit user --user-column user ...
"""
import argparse
import csv

import numpy as np

from edgeworth.textdata import default_sst2_dir


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="the TSV to write (columns sentence, label, user)")
    parser.add_argument("--limit", type=int, default=4000, help="first N training sentences (default 4000)")
    parser.add_argument("--mean", type=float, default=5.0, help="mean sentences per user (default 5)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    with open(default_sst2_dir() / "train.tsv", encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))[:args.limit]
    rng = np.random.default_rng(args.seed)
    user, left, users = 0, int(rng.geometric(1.0 / args.mean)), set()
    with open(args.out, "w", encoding="utf-8", newline="") as f:
        f.write("sentence\tlabel\tuser\n")
        for row in rows:
            f.write(f"{row['sentence']}\t{row['label']}\tu{user}\n")
            users.add(user)
            left -= 1
            if left == 0:
                user, left = user + 1, int(rng.geometric(1.0 / args.mean))
    print(f"wrote {args.out}: {len(rows)} sentences, {len(users)} users")


if __name__ == "__main__":
    main()
