// The C surface Audience Pulse uses from librdkafka. Only the `Kafka` module imports it.
// Swift cannot call C variadic functions or use casting macros, so the few places that
// need them get small inline wrappers here.
#ifndef AUDIENCE_PULSE_CRDKAFKA_SHIM_H
#define AUDIENCE_PULSE_CRDKAFKA_SHIM_H

#include <stdint.h>
#include <stddef.h>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

/// RD_KAFKA_PARTITION_UA: let the partitioner choose.
static const int32_t pulse_partition_unassigned = RD_KAFKA_PARTITION_UA;

/// Enqueues one message to a topic handle with rd_kafka_producev. Key, value and headers
/// are copied or taken over by librdkafka: the caller's buffers may be reused as soon as
/// this returns. On success librdkafka owns `headers`; on failure the caller still owns
/// it. `timestamp_ms` 0 means "now". `block` waits while the local queue is full
/// (RD_KAFKA_MSG_F_BLOCK); only use it on a thread that may block.
static inline rd_kafka_resp_err_t pulse_produce(
    rd_kafka_t *rk, rd_kafka_topic_t *rkt, int32_t partition,
    const void *value, size_t value_len,
    const void *key, size_t key_len,
    rd_kafka_headers_t *headers, int64_t timestamp_ms,
    void *msg_opaque, int block) {
    int flags = RD_KAFKA_MSG_F_COPY | (block ? RD_KAFKA_MSG_F_BLOCK : 0);
    if (headers != NULL) {
        return rd_kafka_producev(rk,
                                 RD_KAFKA_V_RKT(rkt),
                                 RD_KAFKA_V_PARTITION(partition),
                                 RD_KAFKA_V_MSGFLAGS(flags),
                                 RD_KAFKA_V_VALUE((void *)value, value_len),
                                 RD_KAFKA_V_KEY(key, key_len),
                                 RD_KAFKA_V_TIMESTAMP(timestamp_ms),
                                 RD_KAFKA_V_HEADERS(headers),
                                 RD_KAFKA_V_OPAQUE(msg_opaque),
                                 RD_KAFKA_V_END);
    }
    return rd_kafka_producev(rk,
                             RD_KAFKA_V_RKT(rkt),
                             RD_KAFKA_V_PARTITION(partition),
                             RD_KAFKA_V_MSGFLAGS(flags),
                             RD_KAFKA_V_VALUE((void *)value, value_len),
                             RD_KAFKA_V_KEY(key, key_len),
                             RD_KAFKA_V_TIMESTAMP(timestamp_ms),
                             RD_KAFKA_V_OPAQUE(msg_opaque),
                             RD_KAFKA_V_END);
}

#endif
