/* The probe's wire format: what the TC classifier (capture.bpf.c) writes into the ring
 * buffer and the maps, read by agent/live (src/wire.rs mirrors every number here; its
 * tests compile this header with clang and compare).
 *
 * A matched packet is copied as one or more chunks, each a ring-buffer record of one of
 * three constant sizes (the verifier wants constant reservations). Chunks of one packet
 * share (cpu, seq); the program runs to completion on one CPU, so a packet's chunks reach
 * the ring in order and a newer seq of the same CPU means an older packet is finished
 * or was cut short (counted in KCD_CTR_RB_DROPPED by the kernel). */
#ifndef KCD_RECORD_H
#define KCD_RECORD_H

#ifdef KCD_USER_TEST
#include <stdint.h>
typedef uint8_t __u8;
typedef uint16_t __u16;
typedef uint32_t __u32;
typedef uint64_t __u64;
#endif

#define KCD_CHUNK_SMALL 256
#define KCD_CHUNK_MEDIUM 1600
#define KCD_CHUNK_LARGE 4096
/* 64 KiB GSO/GRO super-packets plus their headers. */
#define KCD_MAX_PACKET 69632
#define KCD_MAX_CHUNKS (KCD_MAX_PACKET / KCD_CHUNK_LARGE)

#define KCD_DIR_INGRESS 0
#define KCD_DIR_EGRESS 1

#define KCD_FLAG_LAST 1       /* the packet's last chunk */
#define KCD_FLAG_CUT 2        /* the packet was longer than KCD_MAX_PACKET: the rest is not copied */
#define KCD_FLAG_VLAN 4       /* vlan_tci holds a tag the NIC took out of the data */

/* Per-CPU counters (array map "kcd_counters", index below). */
#define KCD_CTR_SEEN 0        /* packets the program ran on */
#define KCD_CTR_MATCHED 1     /* packets whose port (or first fragment) matched */
#define KCD_CTR_RB_DROPPED 2  /* matched packets not (fully) copied: the ring buffer was full */
#define KCD_CTR_FRAGMENTS 3   /* later IP fragments matched through the fragment map */
#define KCD_CTR_TLS_FLOWS 4   /* TCP flows on no watched port taken for their ClientHello */
#define KCD_CTR_COUNT 5

#define KCD_PORTS_MAX 64
#define KCD_FRAGS_MAX 4096
#define KCD_FLOWS_MAX 8192
#define KCD_RING_DEFAULT (16 * 1024 * 1024)

struct kcd_record_hdr {
    __u64 ts_ns;     /* bpf_ktime_get_ns(): CLOCK_MONOTONIC */
    __u64 seq;       /* per-CPU packet number */
    __u32 cpu;
    __u32 ifindex;
    __u32 pkt_len;   /* skb->len: the whole packet */
    __u32 offset;    /* of this chunk in the packet */
    __u16 chunk_len; /* bytes of data[] that are the packet's */
    __u8 direction;  /* KCD_DIR_* */
    __u8 flags;      /* KCD_FLAG_* */
    __u16 vlan_tci;
    __u16 vlan_proto;
};

struct kcd_record_small { struct kcd_record_hdr h; __u8 data[KCD_CHUNK_SMALL]; };
struct kcd_record_medium { struct kcd_record_hdr h; __u8 data[KCD_CHUNK_MEDIUM]; };
struct kcd_record_large { struct kcd_record_hdr h; __u8 data[KCD_CHUNK_LARGE]; };

/* Key of the fragment map: a matched first fragment's datagram. IPv4 addresses sit in the
 * first 4 bytes of saddr/daddr. */
struct kcd_frag_key {
    __u8 saddr[16];
    __u8 daddr[16];
    __u32 id;
    __u8 proto;
    __u8 family;  /* 4 or 6 */
    __u16 pad;
};

/* Key of the TLS flow map: one direction of a TCP connection on no watched port whose
 * first payload looked like a TLS ClientHello (both directions are entered). */
struct kcd_flow_key {
    __u8 saddr[16];
    __u8 daddr[16];
    __u16 sport;     /* network order, as in the packet */
    __u16 dport;
    __u8 family;     /* 4 or 6 */
    __u8 pad[3];
};

#endif
