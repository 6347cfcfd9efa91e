import AudienceMetrics
import Kafka
import Logging

/// Stage checkpoints in a compacted changelog topic, one changelog partition per stage
/// input partition.
///
/// A checkpoint is the stage's state for one input partition together with the next
/// input offset it reflects. Large states are split into chunks under keys that name the
/// checkpoint (`c/<partition>/<sequence>/<index>`), followed by a manifest under the
/// partition's key (`m/<partition>`). A checkpoint counts only once its manifest is
/// written; the previous checkpoint's chunks are deleted (tombstones) only after that,
/// so compaction can never remove a chunk that the newest complete checkpoint needs.
final class CheckpointStore: Sendable {
    struct Checkpoint: Sendable {
        var sequence: UInt64
        /// The next input offset to read.
        var nextOffset: Int64
        var state: [UInt8]
        var chunkCount: Int
    }

    static let chunkBytes = 512 * 1024
    let topic: String
    private let kafka: KafkaConfiguration
    private let logger: Logger

    init(topic: String, kafka: KafkaConfiguration, logger: Logger) {
        self.topic = topic
        self.kafka = kafka
        self.logger = logger
    }

    /// Produces a checkpoint (chunks, manifest, then tombstones for `previous`' chunks)
    /// through `producer`, inside its current transaction if it has one.
    func write(partition: Int32, sequence: UInt64, nextOffset: Int64, state: [UInt8], previous: Checkpoint?, producer: KafkaProducer) throws(KafkaError) -> Checkpoint {
        let handle = try producer.topic(topic)
        let chunkCount = max(1, (state.count + CheckpointStore.chunkBytes - 1) / CheckpointStore.chunkBytes)
        for index in 0..<chunkCount {
            let lower = index * CheckpointStore.chunkBytes
            let upper = min(state.count, lower + CheckpointStore.chunkBytes)
            let key = Array("c/\(partition)/\(sequence)/\(index)".utf8)
            var value: [UInt8] = [1]  // chunk format version
            value.append(contentsOf: state[lower..<upper])
            try produce(producer, handle, partition, key, value)
        }
        var manifest = BinaryWriter(capacity: 64)
        manifest.write(1)
        manifest.writeVarint(sequence)
        manifest.writeSigned(nextOffset)
        manifest.writeVarint(chunkCount)
        manifest.writeVarint(state.count)
        state.withUnsafeBytes { manifest.writeFixed64(Hash64.hash($0)) }
        try produce(producer, handle, partition, Array("m/\(partition)".utf8), manifest.bytes)
        if let previous, previous.sequence != sequence {
            for index in 0..<previous.chunkCount {
                try produce(producer, handle, partition, Array("c/\(partition)/\(previous.sequence)/\(index)".utf8), nil)
            }
        }
        return Checkpoint(sequence: sequence, nextOffset: nextOffset, state: [], chunkCount: chunkCount)
    }

    private func produce(_ producer: KafkaProducer, _ handle: KafkaProducerTopic, _ partition: Int32, _ key: [UInt8], _ value: [UInt8]?) throws(KafkaError) {
        let result: Result<Void, KafkaError> = key.withUnsafeBytes { keyBytes in
            guard let value else {
                return Result { () throws(KafkaError) in
                    try producer.produce(to: handle, partition: partition, key: keyBytes, value: UnsafeRawBufferPointer(start: nil, count: 0), blockIfQueueFull: true)
                }
            }
            return value.withUnsafeBytes { valueBytes in
                Result { () throws(KafkaError) in
                    try producer.produce(to: handle, partition: partition, key: keyBytes, value: valueBytes, blockIfQueueFull: true)
                }
            }
        }
        try result.get()
    }

    /// Reads changelog partition `partition` to its end and returns the newest complete
    /// checkpoint, or `nil` if there is none. Blocks the caller (a stage thread).
    func restore(partition: Int32) throws(KafkaError) -> Checkpoint? {
        // Short fetch waits: the last (empty) fetch, which reports the end, then returns at
        // once instead of after the default 500 ms.
        var common = kafka
        common.properties["fetch.wait.max.ms"] = "10"
        let consumer = try KafkaConsumer(
            configuration: KafkaConsumerConfiguration(common: common, groupID: "\(topic)-restore", isolationLevel: .readCommitted, enablePartitionEOF: true),
            logger: logger)
        // Read to the end-of-partition event, not to a queried high watermark: some brokers
        // (the local test broker) report the start of the last batch as the high
        // watermark, which would make a one-batch changelog look empty.
        try consumer.assign([KafkaTopicPartition(topic: topic, partition: partition, offset: KafkaTopicPartition.beginning)])
        var manifest: (sequence: UInt64, nextOffset: Int64, chunks: Int, size: Int, hash: UInt64)?
        var chunks: [String: [UInt8]] = [:]
        var reachedEnd = false
        var idle = 0
        while !reachedEnd && idle < 300 {
            let received: Int
            do {
                received = try consumer.poll(maxMessages: 1_000, timeout: .milliseconds(100)) { batch in
                    if let error = batch.errors.first { throw error }
                    for message in batch {
                        let key = message.key.map { String(decoding: $0, as: UTF8.self) } ?? ""
                        if key.hasPrefix("m/") {
                            var reader = BinaryReader(Array(message.value))
                            guard (try? reader.expectVersion(1, of: "manifest")) != nil,
                                let sequence = try? reader.readVarint(), let next = try? reader.readSigned(),
                                let count = try? reader.readInt(), let size = try? reader.readInt(), let hash = try? reader.readFixed64()
                            else { continue }
                            manifest = (sequence, next, count, size, hash)
                        } else if message.value.isEmpty {
                            chunks[key] = nil
                        } else {
                            chunks[key] = Array(message.value.dropFirst())
                        }
                    }
                    if !batch.partitionEOFs.isEmpty { reachedEnd = true }
                }
            } catch let error as KafkaError {
                throw error
            } catch {
                throw KafkaError(code: .fatal, message: "restore of \(topic)[\(partition)]: \(error)")
            }
            idle = received == 0 ? idle + 1 : 0
        }
        guard reachedEnd else { throw KafkaError(code: .timedOut, message: "restore of \(topic)[\(partition)] did not reach the end of the changelog") }
        guard let manifest else { return nil }
        var state: [UInt8] = []
        state.reserveCapacity(manifest.size)
        for index in 0..<manifest.chunks {
            guard let chunk = chunks["c/\(partition)/\(manifest.sequence)/\(index)"] else {
                throw KafkaError(code: .state, message: "checkpoint \(manifest.sequence) of \(topic)[\(partition)] misses chunk \(index)")
            }
            state.append(contentsOf: chunk)
        }
        let hash = state.withUnsafeBytes { Hash64.hash($0) }
        guard state.count == manifest.size, hash == manifest.hash else {
            throw KafkaError(code: .state, message: "checkpoint \(manifest.sequence) of \(topic)[\(partition)] is corrupt (size or hash mismatch)")
        }
        return Checkpoint(sequence: manifest.sequence, nextOffset: manifest.nextOffset, state: state, chunkCount: manifest.chunks)
    }
}
