/*
 * loadgen: loopback TCP writes at full speed, for tcpwdist's benchmarks.
 *
 *   loadgen SIZE SECONDS WRITER_CPU READER_CPU [COMM]
 *
 * A reader process (pinned to READER_CPU) drains a loopback connection;
 * the writer (pinned to WRITER_CPU, renamed COMM) makes blocking write()s
 * of SIZE bytes for SECONDS and prints "writes/s bytes/s writes ns/write",
 * the last being the writer's own CPU time (user + system, which includes
 * any BPF program run in its write path) per write.
 * C, so that what is measured is the kernel's write path and the probe on
 * it, not an interpreter.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void pin(int cpu) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    if (sched_setaffinity(0, sizeof(set), &set) != 0) {
        perror("sched_setaffinity");
        exit(1);
    }
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
    if (argc < 5) {
        fprintf(stderr, "usage: loadgen SIZE SECONDS WRITER_CPU READER_CPU [COMM]\n");
        return 2;
    }
    size_t size = strtoul(argv[1], NULL, 10);
    double seconds = atof(argv[2]);
    int wcpu = atoi(argv[3]), rcpu = atoi(argv[4]);
    const char *comm = argc > 5 ? argv[5] : "tw-loadgen";

    int srv = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(addr);
    if (bind(srv, (struct sockaddr *)&addr, sizeof(addr)) || listen(srv, 1) ||
        getsockname(srv, (struct sockaddr *)&addr, &len)) {
        perror("listen");
        return 1;
    }
    pid_t reader = fork();
    if (reader == 0) {
        pin(rcpu);
        int c = accept(srv, NULL, NULL);
        static char buf[1 << 20];
        while (read(c, buf, sizeof(buf)) > 0)
            ;
        _exit(0);
    }
    pin(wcpu);
    prctl(PR_SET_NAME, comm, 0, 0, 0);
    int s = socket(AF_INET, SOCK_STREAM, 0);
    if (connect(s, (struct sockaddr *)&addr, sizeof(addr))) {
        perror("connect");
        return 1;
    }
    char *payload = calloc(1, size ? size : 1);
    unsigned long writes = 0;
    double start = now(), end = start + seconds, t = start;
    while (t < end) {
        for (int i = 0; i < 256; i++) {
            if (write(s, payload, size) != (ssize_t)size) {
                perror("write");
                return 1;
            }
        }
        writes += 256;
        t = now();
    }
    close(s);
    waitpid(reader, NULL, 0);
    double took = t - start;
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double cpu = ru.ru_utime.tv_sec + ru.ru_stime.tv_sec
               + (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
    printf("%.0f %.0f %lu %.1f\n", writes / took, writes * (double)size / took, writes,
           cpu * 1e9 / writes);
    return 0;
}
