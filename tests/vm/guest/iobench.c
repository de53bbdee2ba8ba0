/* iobench DEV SECONDS: the guest side of scripts/bench-vm.sh. On block device DEV, with
 * O_DIRECT and one request at a time (queue depth 1), for SECONDS each:
 *   4 KiB random reads, 4 KiB random writes (over the first 1 GiB),
 *   1 MiB sequential reads, 1 MiB sequential writes (from offset 0, wrapping at 1 GiB);
 * the write phases end with fsync (a FLUSH), counted in their time. Prints one line each:
 *   SNAPDISK-GUEST iobench <phase> ops=<n> seconds=<s> iops=<n> mibps=<x>
 * and "SNAPDISK-GUEST iobench done". Exit 1 with a message on any error. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define SPAN (1ull << 30)

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

static uint64_t rng = 88172645463325252ull;
static uint64_t next(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static int phase(int fd, const char *name, int write, int random, size_t bs, double seconds, char *buf) {
    uint64_t ops = 0, off = 0;
    double start = now(), end = start + seconds, t;
    do {
        if (random)
            off = (next() % (SPAN / bs)) * bs;
        ssize_t n = write ? pwrite(fd, buf, bs, off) : pread(fd, buf, bs, off);
        if (n != (ssize_t)bs) {
            printf("SNAPDISK-GUEST error=iobench %s at %llu: %s\n", name, (unsigned long long)off,
                   n < 0 ? strerror(errno) : "short transfer");
            return 1;
        }
        ops++;
        if (!random)
            off = (off + bs) % SPAN;
        t = now();
    } while (t < end);
    if (write && fsync(fd) != 0) {
        printf("SNAPDISK-GUEST error=iobench fsync: %s\n", strerror(errno));
        return 1;
    }
    t = now() - start;
    printf("SNAPDISK-GUEST iobench %s ops=%llu seconds=%.3f iops=%.0f mibps=%.2f\n", name,
           (unsigned long long)ops, t, ops / t, ops * (double)bs / t / 1048576.0);
    fflush(stdout);
    return 0;
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: iobench DEV SECONDS\n");
        return 2;
    }
    double seconds = atof(argv[2]);
    int fd = open(argv[1], O_RDWR | O_DIRECT);
    if (fd < 0) {
        printf("SNAPDISK-GUEST error=iobench open %s: %s\n", argv[1], strerror(errno));
        return 1;
    }
    char *buf;
    if (posix_memalign((void **)&buf, 4096, 1 << 20) != 0)
        return 1;
    memset(buf, 0xa5, 1 << 20);
    /* Fill the span first so reads hit written blocks, as on a disk in use. */
    for (uint64_t off = 0; off < SPAN; off += 1 << 20)
        if (pwrite(fd, buf, 1 << 20, off) != 1 << 20) {
            printf("SNAPDISK-GUEST error=iobench fill: %s\n", strerror(errno));
            return 1;
        }
    fsync(fd);
    if (phase(fd, "randread", 0, 1, 4096, seconds, buf) || phase(fd, "randwrite", 1, 1, 4096, seconds, buf) ||
        phase(fd, "seqread", 0, 0, 1 << 20, seconds, buf) || phase(fd, "seqwrite", 1, 0, 1 << 20, seconds, buf))
        return 1;
    printf("SNAPDISK-GUEST iobench done\n");
    fflush(stdout);
    return 0;
}
