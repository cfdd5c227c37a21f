/* The live-capture benchmark's load: UDP datagrams with one payload, to one address and
 * port, at a steady rate (sendmmsg in batches, paced on CLOCK_MONOTONIC).
 *   udpflood ADDR PORT RATE COUNT PAYLOAD_FILE      prints: sent SECONDS */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#define BATCH 32

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
    if (argc != 6) {
        fprintf(stderr, "usage: udpflood ADDR PORT RATE COUNT PAYLOAD_FILE\n");
        return 2;
    }
    static unsigned char payload[1400];
    FILE *f = fopen(argv[5], "rb");
    if (!f) {
        perror(argv[5]);
        return 1;
    }
    size_t len = fread(payload, 1, sizeof(payload), f);
    fclose(f);
    struct sockaddr_in dst = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[2]))};
    if (inet_pton(AF_INET, argv[1], &dst.sin_addr) != 1) {
        fprintf(stderr, "bad address %s\n", argv[1]);
        return 2;
    }
    double rate = atof(argv[3]);
    long count = atol(argv[4]);
    int s = socket(AF_INET, SOCK_DGRAM, 0);
    int big = 1 << 22;
    setsockopt(s, SOL_SOCKET, SO_SNDBUF, &big, sizeof(big));
    if (s < 0 || connect(s, (struct sockaddr *)&dst, sizeof(dst)) < 0) {
        perror("socket");
        return 1;
    }
    struct iovec iov = {.iov_base = payload, .iov_len = len};
    struct mmsghdr msgs[BATCH];
    memset(msgs, 0, sizeof(msgs));
    for (int i = 0; i < BATCH; i++) {
        msgs[i].msg_hdr.msg_iov = &iov;
        msgs[i].msg_hdr.msg_iovlen = 1;
    }
    long sent = 0;
    double t0 = now();
    while (sent < count) {
        double due = t0 + sent / rate;
        while (now() < due)
            ;
        int n = count - sent < BATCH ? (int)(count - sent) : BATCH;
        int r = sendmmsg(s, msgs, n, 0);
        if (r > 0)
            sent += r;
        else if (r < 0 && errno != ENOBUFS && errno != EAGAIN && errno != ECONNREFUSED) {
            perror("sendmmsg");
            return 1;
        }
    }
    printf("%ld %.3f\n", sent, now() - t0);
    return 0;
}
