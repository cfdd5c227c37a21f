// SPDX-License-Identifier: GPL-2.0
/* kcdscope's TC classifier: copies the packets of the configured ports (Kerberos, TLS,
 * HTTP) into a ring buffer for the agent, and nothing else. It never parses beyond the
 * ports, never changes a packet and always returns TC_ACT_UNSPEC (TC_ACT_OK would stop the
 * programs after it on the same hook): an observer must fail open. */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "record.h"

char LICENSE[] SEC("license") = "GPL";

struct {
    __uint(type, BPF_MAP_TYPE_RINGBUF);
    __uint(max_entries, KCD_RING_DEFAULT);
} kcd_ring SEC(".maps");

/* Port -> 1: the ports whose packets are copied (either side of the connection). */
struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, KCD_PORTS_MAX);
    __type(key, __u16);
    __type(value, __u8);
} kcd_ports SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, KCD_CTR_COUNT);
    __type(key, __u32);
    __type(value, __u64);
} kcd_counters SEC(".maps");

/* Datagrams whose first fragment matched: their later fragments carry no ports. */
struct {
    __uint(type, BPF_MAP_TYPE_LRU_HASH);
    __uint(max_entries, KCD_FRAGS_MAX);
    __type(key, struct kcd_frag_key);
    __type(value, __u8);
} kcd_frags SEC(".maps");

/* Set by the loader: 0 turns off following TLS by content (--no-tls-detect). */
volatile const __u8 kcd_tls_detect = 1;

/* TCP connections on no watched port that started with a TLS ClientHello: followed to
 * their end (least recently used evicted; the decoder recognises TLS by content on any
 * port, as a replay does, and this is how the probe gives it those connections). */
struct {
    __uint(type, BPF_MAP_TYPE_LRU_HASH);
    __uint(max_entries, KCD_FLOWS_MAX);
    __type(key, struct kcd_flow_key);
    __type(value, __u8);
} kcd_flows SEC(".maps");

/* The record header of the packet being copied, per CPU: emit_chunk() is a global
 * function (verified once, not per call site, which keeps the program under the
 * verifier's limits) and such functions take at most the context and scalars. */
struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, struct kcd_record_hdr);
} kcd_scratch SEC(".maps");

/* Next packet number, per CPU. */
struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, __u64);
} kcd_seq SEC(".maps");

static __always_inline void count(__u32 which)
{
    __u64 *c = bpf_map_lookup_elem(&kcd_counters, &which);
    if (c)
        *c += 1;
}

static __always_inline int port_wanted(__u16 port_be)
{
    __u16 p = bpf_ntohs(port_be);
    return bpf_map_lookup_elem(&kcd_ports, &p) != 0;
}

/* One record of a size class: reserve, fill, copy, submit. Without a wakeup: the agent
 * drains on a timer, and a wakeup per record would cost more than the copy. */
#define EMIT(type, size)                                                                  \
    do {                                                                                  \
        struct type *r = bpf_ringbuf_reserve(&kcd_ring, sizeof(*r), 0);                   \
        if (!r)                                                                           \
            return -1;                                                                    \
        r->h = *h;                                                                        \
        r->h.offset = offset;                                                             \
        r->h.chunk_len = n;                                                               \
        r->h.flags = flags;                                                               \
        __u64 len = n;                                                                    \
        /* Hide what the compiler knows of len, or it drops the check the verifier needs. */ \
        asm volatile("" : "+r"(len));                                                     \
        if (len == 0 || len > (size) || bpf_skb_load_bytes(skb, offset, r->data, len) < 0) { \
            bpf_ringbuf_discard(r, BPF_RB_NO_WAKEUP);                                     \
            return -1;                                                                    \
        }                                                                                 \
        bpf_ringbuf_submit(r, BPF_RB_NO_WAKEUP);                                          \
    } while (0)

/* Copies bytes [offset, offset + chunk) of the packet into one ring-buffer record of the
 * smallest size class that holds them. 0 on success, -1 when the ring is full. */
__attribute__((noinline)) int emit_chunk(struct __sk_buff *skb, __u32 offset)
{
    __u32 zero = 0;
    struct kcd_record_hdr *h = bpf_map_lookup_elem(&kcd_scratch, &zero);
    if (!h)
        return -1;
    __u32 total = h->pkt_len;
    if (total > KCD_MAX_PACKET)
        total = KCD_MAX_PACKET;
    if (offset >= total)
        return 0;
    __u64 n = total - offset;
    __u8 flags = h->flags;
    if (n > KCD_CHUNK_LARGE)
        n = KCD_CHUNK_LARGE;
    else
        flags |= KCD_FLAG_LAST;
    if (n <= KCD_CHUNK_SMALL)
        EMIT(kcd_record_small, KCD_CHUNK_SMALL);
    else if (n <= KCD_CHUNK_MEDIUM)
        EMIT(kcd_record_medium, KCD_CHUNK_MEDIUM);
    else
        EMIT(kcd_record_large, KCD_CHUNK_LARGE);
    return 0;
}

struct ports { __u16 src; __u16 dst; };

/* A TCP segment on no watched port: 1 if its connection is one followed for TLS, or if its
 * payload starts with a ClientHello (record type 22, version 3.0-3.4, handshake type 1),
 * which enters both directions of the connection into kcd_flows. `fk` holds the
 * addresses and family; `off` is where the TCP header starts. */
static __always_inline int tls_flow(struct __sk_buff *skb, __u32 off, struct kcd_frag_key *fk, struct ports pp)
{
    struct kcd_flow_key k = {};
    __builtin_memcpy(k.saddr, fk->saddr, 16);
    __builtin_memcpy(k.daddr, fk->daddr, 16);
    k.sport = pp.src;
    k.dport = pp.dst;
    k.family = fk->family;
    if (!kcd_tls_detect)
        return 0;
    if (bpf_map_lookup_elem(&kcd_flows, &k))
        return 1;
    __u8 th[13];
    if (bpf_skb_load_bytes(skb, off, th, sizeof(th)) < 0)
        return 0;
    __u32 payload = off + (__u32)(th[12] >> 4) * 4;
    __u8 b[6];
    if (payload + sizeof(b) > skb->len || bpf_skb_load_bytes(skb, payload, b, sizeof(b)) < 0)
        return 0;
    if (b[0] != 0x16 || b[1] != 0x03 || b[2] > 0x04 || b[5] != 0x01)
        return 0;
    __u8 one = 1;
    bpf_map_update_elem(&kcd_flows, &k, &one, BPF_ANY);
    struct kcd_flow_key r = {};
    __builtin_memcpy(r.saddr, fk->daddr, 16);
    __builtin_memcpy(r.daddr, fk->saddr, 16);
    r.sport = pp.dst;
    r.dport = pp.src;
    r.family = fk->family;
    bpf_map_update_elem(&kcd_flows, &r, &one, BPF_ANY);
    count(KCD_CTR_TLS_FLOWS);
    return 1;
}

/* 1 if the packet is one to copy. `off` is where the network header starts. */
static __always_inline int classify(struct __sk_buff *skb, __u32 off, __u16 proto)
{
    struct kcd_frag_key key = {};
    struct ports pp;
    __u8 l4;
    int first_fragment_with_more = 0;

    if (proto == bpf_htons(ETH_P_IP)) {
        __u8 ip[20];
        if (bpf_skb_load_bytes(skb, off, ip, sizeof(ip)) < 0)
            return 0;
        __u32 ihl = (ip[0] & 0x0f) * 4;
        if (ihl < 20)
            return 0;
        l4 = ip[9];
        __u16 frag = ((__u16)ip[6] << 8) | ip[7];
        __builtin_memcpy(key.saddr, &ip[12], 4);
        __builtin_memcpy(key.daddr, &ip[16], 4);
        key.id = ((__u16)ip[4] << 8) | ip[5];
        key.proto = l4;
        key.family = 4;
        if (frag & 0x1fff) {
            if (bpf_map_lookup_elem(&kcd_frags, &key)) {
                count(KCD_CTR_FRAGMENTS);
                return 1;
            }
            return 0;
        }
        first_fragment_with_more = (frag & 0x2000) != 0;
        off += ihl;
    } else if (proto == bpf_htons(ETH_P_IPV6)) {
        __u8 ip6[40];
        if (bpf_skb_load_bytes(skb, off, ip6, sizeof(ip6)) < 0)
            return 0;
        l4 = ip6[6];
        __builtin_memcpy(key.saddr, &ip6[8], 16);
        __builtin_memcpy(key.daddr, &ip6[24], 16);
        key.family = 6;
        off += 40;
        /* Extension headers, a few deep; the fragment header says which fragment. */
#pragma unroll
        for (int i = 0; i < 4; i++) {
            __u8 ext[8];
            if (l4 != 0 && l4 != 43 && l4 != 60 && l4 != 44)
                break;
            if (bpf_skb_load_bytes(skb, off, ext, sizeof(ext)) < 0)
                return 0;
            if (l4 == 44) {
                __u16 fo = ((__u16)ext[2] << 8) | ext[3];
                key.id = ((__u32)ext[4] << 24) | ((__u32)ext[5] << 16) | ((__u32)ext[6] << 8) | ext[7];
                key.proto = ext[0];
                l4 = ext[0];
                off += 8;
                if (fo & 0xfff8) {
                    if (bpf_map_lookup_elem(&kcd_frags, &key)) {
                        count(KCD_CTR_FRAGMENTS);
                        return 1;
                    }
                    return 0;
                }
                first_fragment_with_more = fo & 1;
            } else {
                l4 = ext[0];
                off += ((__u32)ext[1] + 1) * 8;
            }
        }
    } else {
        return 0;
    }
    if (l4 != IPPROTO_TCP && l4 != IPPROTO_UDP)
        return 0;
    if (bpf_skb_load_bytes(skb, off, &pp, sizeof(pp)) < 0)
        return 0;
    if (!port_wanted(pp.src) && !port_wanted(pp.dst)) {
        if (l4 != IPPROTO_TCP)
            return 0;
        return tls_flow(skb, off, &key, pp);
    }
    if (first_fragment_with_more) {
        __u8 one = 1;
        bpf_map_update_elem(&kcd_frags, &key, &one, BPF_ANY);
    }
    return 1;
}

static __always_inline void capture(struct __sk_buff *skb, __u8 direction)
{
    __u32 zero = 0;
    struct ethhdr eth;
    __u32 off = sizeof(eth);

    count(KCD_CTR_SEEN);
    if (bpf_skb_load_bytes(skb, 0, &eth, sizeof(eth)) < 0)
        return;
    __u16 proto = eth.h_proto;
    /* Up to two tags still in the data (802.1Q, 802.1ad). */
#pragma unroll
    for (int i = 0; i < 2; i++) {
        if (proto != bpf_htons(ETH_P_8021Q) && proto != bpf_htons(ETH_P_8021AD))
            break;
        __u16 next[2];
        if (bpf_skb_load_bytes(skb, off, next, sizeof(next)) < 0)
            return;
        proto = next[1];
        off += 4;
    }
    if (!classify(skb, off, proto))
        return;
    count(KCD_CTR_MATCHED);

    struct kcd_record_hdr *h = bpf_map_lookup_elem(&kcd_scratch, &zero);
    __u64 *seq = bpf_map_lookup_elem(&kcd_seq, &zero);
    if (!h || !seq)
        return;
    *seq += 1;
    h->ts_ns = bpf_ktime_get_ns();
    h->seq = *seq;
    h->cpu = bpf_get_smp_processor_id();
    h->ifindex = skb->ifindex;
    h->pkt_len = skb->len;
    h->offset = 0;
    h->chunk_len = 0;
    h->direction = direction;
    h->flags = skb->len > KCD_MAX_PACKET ? KCD_FLAG_CUT : 0;
    h->vlan_tci = 0;
    h->vlan_proto = 0;
    if (skb->vlan_present) {
        h->flags |= KCD_FLAG_VLAN;
        h->vlan_tci = skb->vlan_tci;
        h->vlan_proto = bpf_ntohs(skb->vlan_proto);
    }
    for (__u32 i = 0; i < KCD_MAX_CHUNKS + 1; i++) {
        __u32 at = i * KCD_CHUNK_LARGE;
        if (at >= skb->len || at >= KCD_MAX_PACKET)
            break;
        if (emit_chunk(skb, at) < 0) {
            count(KCD_CTR_RB_DROPPED);
            break;
        }
    }
}

SEC("classifier/ingress")
int kcd_ingress(struct __sk_buff *skb)
{
    capture(skb, KCD_DIR_INGRESS);
    return TC_ACT_UNSPEC;
}

SEC("classifier/egress")
int kcd_egress(struct __sk_buff *skb)
{
    capture(skb, KCD_DIR_EGRESS);
    return TC_ACT_UNSPEC;
}
