#!/usr/bin/env python3
"""Deterministic SQL-dump-like data for bench/run.

    gen-sqldump.py base MIB OUT          # version 0: about MIB MiB of rows
    gen-sqldump.py next SEED IN OUT      # version k+1 from version k

`next` rewrites ~0.5% of the rows (spread through the file, ids kept), deletes
a few rows and inserts a few new ones. The same arguments always give the same
bytes (random.Random with a fixed seed, no clock, no hash randomisation).
"""

import random
import re
import sys

WORDS = (
    "alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima "
    "mike november oscar papa quebec romeo sierra tango uniform victor whiskey "
    "xray yankee zulu order invoice payment refund shipment delivered pending "
    "cancelled customer account balance credit debit warehouse stock item "
    "product price discount total amount review rating great poor excellent "
    "average quality fast slow package box damaged returned exchanged support "
    "ticket issue resolved open closed urgent normal low high the a of and to "
    "in is was for on with as by at from this that it be are not have has"
).split()
FIRST = (
    "Ada Alan Barbara Claude Dennis Donald Edsger Frances Grace Guido Hedy "
    "Ivan John Ken Linus Margaret Niklaus Radia Richard Rob Shafi Sophie Tim "
    "Tony Ward Whitfield Yukihiro Zhang Olga Pierre Amina Kenji Lucia Mateo"
).split()
LAST = (
    "Lovelace Turing Liskov Shannon Ritchie Knuth Dijkstra Allen Hopper Rossum "
    "Lamarr Sutherland Backus Thompson Torvalds Hamilton Wirth Perlman Stallman "
    "Pike Goldwasser Wilson Berners-Lee Hoare Cunningham Diffie Matsumoto Wei "
    "Novak Martin Diallo Tanaka Rossi Garcia"
).split()
STATUS = ("pending", "paid", "shipped", "delivered", "cancelled", "refunded")
CITIES = ("Lyon", "Osaka", "Lagos", "Quito", "Oslo", "Pune", "Austin", "Graz")

TABLES = {
    "customers": (0.2, "(id, name, email, city, balance, created_at)"),
    "orders": (0.5, "(id, customer_id, amount, status, created_at, note)"),
    "comments": (0.3, "(id, order_id, rating, body)"),
}
ROW_RE = re.compile(r"^INSERT INTO `(\w+)` .* VALUES \((\d+),")


def text(rng, lo, hi):
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(lo, hi)))


def stamp(rng):
    return "2%03d-%02d-%02d %02d:%02d:%02d" % (
        rng.randint(15, 24), rng.randint(1, 12), rng.randint(1, 28),
        rng.randint(0, 23), rng.randint(0, 59), rng.randint(0, 59))


def values(table, rid, rng):
    if table == "customers":
        first, last = rng.choice(FIRST), rng.choice(LAST)
        return "%d, '%s %s', '%s.%s%d@example.org', '%s', %.2f, '%s'" % (
            rid, first, last, first.lower(), last.lower(), rng.randint(1, 999),
            rng.choice(CITIES), rng.uniform(-500, 20000), stamp(rng))
    if table == "orders":
        return "%d, %d, %.2f, '%s', '%s', '%s'" % (
            rid, rng.randint(1, 10**6), rng.uniform(1, 5000),
            rng.choice(STATUS), stamp(rng), text(rng, 0, 12))
    return "%d, %d, %d, '%s'" % (
        rid, rng.randint(1, 10**7), rng.randint(1, 5), text(rng, 3, 40))


def row(table, rid, rng):
    cols = TABLES[table][1]
    return "INSERT INTO `%s` %s VALUES (%s);\n" % (
        table, cols, values(table, rid, rng))


def header(table):
    return ("\n--\n-- Table structure for table `%s`\n--\n\n"
            "DROP TABLE IF EXISTS `%s`;\nCREATE TABLE `%s` %s;\n\n"
            "-- Dumping data for table `%s`\n\n") % (
        table, table, table, TABLES[table][1], table)


def base(mib, out):
    rng = random.Random(20240601)
    total = mib * 1024 * 1024
    with open(out, "w", buffering=1 << 20) as f:
        f.write("-- envsnap bench SQL dump, version 0\n")
        for table, (share, _) in TABLES.items():
            f.write(header(table))
            quota, written, rid = int(total * share), 0, 0
            while written < quota:
                rid += 1
                line = row(table, rid, rng)
                f.write(line)
                written += len(line)
        f.write("\n-- Dump completed\n")


def next_version(seed, src, dst):
    rng = random.Random(seed)
    with open(src) as f:
        lines = f.readlines()
    rows = [i for i, line in enumerate(lines) if line.startswith("INSERT")]
    n_few = max(1, len(rows) // 100000)  # "a few": ~30 in 300 MiB
    deleted = set(rng.sample(rows, n_few))
    inserted = set(rng.sample(rows, n_few))
    max_id = {t: 0 for t in TABLES}
    for i in rows:
        table, rid = ROW_RE.match(lines[i]).groups()
        max_id[table] = max(max_id[table], int(rid))
    with open(dst, "w", buffering=1 << 20) as f:
        for i, line in enumerate(lines):
            if i in deleted:
                continue
            m = ROW_RE.match(line) if line.startswith("INSERT") else None
            if m and rng.random() < 0.005:
                line = row(m.group(1), int(m.group(2)), rng)
            f.write(line)
            if i in inserted:
                table = m.group(1)
                max_id[table] += 1
                f.write(row(table, max_id[table], rng))


def main(argv):
    if len(argv) == 4 and argv[1] == "base":
        base(int(argv[2]), argv[3])
    elif len(argv) == 5 and argv[1] == "next":
        next_version(int(argv[2]), argv[3], argv[4])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv)
