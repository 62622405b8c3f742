"""Small labelled TSV files for the fine-tuning tests, written where a test asks (no dependence on SST-2's
location): sentences of common English words whose label is whether most words are positive."""
import random

POSITIVE = "good great fine lovely superb warm bright clever funny charming".split()
NEGATIVE = "bad awful dull boring weak cold dark stupid flat tedious".split()
FILLER = "the film was a story and its cast with plot".split()


def write_labelled_tsv(path, n, *, seed=0, users_every=None, user_pattern=None):
    """Writes ``n`` rows of ``sentence<TAB>label[<TAB>user]`` with a header.

    ``users_every``: user i wrote rows i * users_every .. (i + 1) * users_every - 1; ``user_pattern``: user u
    wrote 1 + (u mod user_pattern) rows in a row.  Returns the path as a string.
    """
    rng = random.Random(seed)
    with_users = users_every is not None or user_pattern is not None
    user, left = 0, 1
    with open(path, "w", encoding="utf-8", newline="") as f:
        f.write("sentence\tlabel" + ("\tuser" if with_users else "") + "\n")
        for i in range(n):
            pos, neg = rng.randint(0, 4), rng.randint(0, 4)
            words = rng.sample(POSITIVE, pos) + rng.sample(NEGATIVE, neg) + rng.sample(FILLER, rng.randint(1, 5))
            rng.shuffle(words)
            row = f"{' '.join(words)}\t{int(pos > neg)}"
            if users_every is not None:
                row += f"\tu{i // users_every}"
            elif user_pattern is not None:
                row += f"\tu{user}"
                left -= 1
                if left == 0:
                    user += 1
                    left = 1 + user % user_pattern
            f.write(row + "\n")
    return str(path)


def strict_json(text):
    """``json.loads`` that refuses NaN, Infinity and -Infinity, as a strict parser (JavaScript's JSON.parse) does:
    the command line's ``--json`` output must parse with it."""
    import json

    def refuse(name):
        raise ValueError(f"not strict JSON: {name}")

    return json.loads(text, parse_constant=refuse)
