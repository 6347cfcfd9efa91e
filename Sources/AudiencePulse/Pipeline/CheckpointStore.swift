import AudienceMetrics
import Kafka
import Logging
import Synchronization

/// Stage checkpoints in a compacted changelog topic, one changelog partition per stage
/// input partition.
///
/// A checkpoint is the stage's state for one input partition together with the next
/// input offset it reflects. It is a chain of pieces: a whole state, then any number of
/// increments (what changed since the piece before, which only the stage knows how to
/// apply). Each piece is split into chunks under keys that name it
/// (`c/<partition>/<sequence>.<writer>/<index>`); a manifest under the partition's key
/// (`m/<partition>`) lists the pieces. A checkpoint counts only once its manifest is
/// written. A whole checkpoint deletes the pieces of the chain before it (tombstones) only
/// after its manifest, and an increment deletes nothing, so compaction can never remove a
/// chunk that the newest complete checkpoint needs.
///
/// `writer` is random per process: a process that was stopped past its session timeout
/// and resumes (a zombie) continues the sequence of the checkpoint it last wrote, as does
/// the member that took its partitions over, so sequence numbers alone could name two
/// different pieces; with the writer in the key their chunks never mix. A process extends
/// only a chain it wrote itself, recently (``canExtend(_:now:)``): a zombie, whose last
/// checkpoint is older than its session timeout, and a process that restored another
/// one's chain, write a whole checkpoint, whose pieces no other chain shares.
final class CheckpointStore: Sendable {
    /// One piece of a checkpoint's chain, as its manifest lists it.
    struct Piece: Sendable {
        var sequence: UInt64
        /// The process that wrote it (0: written before chunk keys named their writer).
        var writer: UInt64
        var chunkCount: Int
        var size: Int
        var hash: UInt64
    }

    struct Checkpoint: Sendable {
        /// The next input offset to read.
        var nextOffset: Int64
        /// The chain: a whole state, then increments in the order they were written.
        var pieces: [Piece]
        /// The pieces' bytes, in the same order (restored checkpoints only).
        var states: [[UInt8]] = []
        /// When this process wrote it (nil: restored).
        var writtenAt: ContinuousClock.Instant?

        /// The newest piece's sequence number.
        var sequence: UInt64 { pieces.last?.sequence ?? 0 }
        /// The whole state the chain starts with (restored checkpoints only).
        var state: [UInt8] { states.first ?? [] }
        /// The increments' bytes, oldest first (restored checkpoints only).
        var increments: ArraySlice<[UInt8]> { states.dropFirst() }
        /// Bytes of the chain's increments.
        var incrementBytes: Int { pieces.dropFirst().reduce(0) { $0 + $1.size } }
        /// The sizes of its pieces.
        var chain: CheckpointChain { CheckpointChain(wholeBytes: pieces.first?.size ?? 0, incrementBytes: incrementBytes, pieces: pieces.count) }

        /// The keys of its pieces' chunks in changelog partition `partition`.
        func chunkKeys(partition: Int32) -> Set<String> {
            Set(pieces.lazy.flatMap { piece in
                (0..<piece.chunkCount).lazy.map { CheckpointStore.chunkKey(partition: partition, sequence: piece.sequence, writer: piece.writer, index: $0) }
            })
        }

        /// The same checkpoint without its state bytes (what a stage keeps to delete its
        /// chunks once the next whole checkpoint is complete).
        var withoutState: Checkpoint { Checkpoint(nextOffset: nextOffset, pieces: pieces, writtenAt: writtenAt) }
    }

    static func chunkKey(partition: Int32, sequence: UInt64, writer: UInt64, index: Int) -> String {
        writer == 0 ? "c/\(partition)/\(sequence)/\(index)" : "c/\(partition)/\(sequence).\(String(writer, radix: 16))/\(index)"
    }

    static let chunkBytes = 512 * 1024
    let topic: String
    /// This process's writer id (in its chunks' keys).
    let writer = UInt64.random(in: 1...UInt64.max)
    private let kafka: KafkaConfiguration
    private let logger: Logger
    /// How recent a chain's newest piece must be for ``canExtend(_:now:)``: less than the
    /// consumer's session timeout, past which the group may have moved the partition.
    private let extendWithin: Duration
    /// Per partition, the keys of live chunks that no piece of the checkpoint its last
    /// restore found lists: pieces of a chain that broke (a process that went on adding
    /// increments after another took its partition over), or chunks whose manifest was
    /// never written (also where no manifest was written at all: a process stopped during
    /// the partition's first checkpoint). Nothing reads them; the partition's next whole
    /// checkpoint deletes them (``write(partition:sequence:nextOffset:state:incremental:previous:producer:)``).
    private let strays = Mutex<[Int32: [String]]>([:])

    init(topic: String, kafka: KafkaConfiguration, logger: Logger) {
        self.topic = topic
        self.kafka = kafka
        self.logger = logger
        let session = kafka.properties["session.timeout.ms"].flatMap { Int64($0) } ?? 45_000
        let poll = kafka.properties["max.poll.interval.ms"].flatMap { Int64($0) } ?? 300_000
        extendWithin = .milliseconds(min(session, poll))
    }

    /// Whether the next checkpoint may be an increment on `checkpoint`: this process wrote
    /// every piece of its chain, the newest less than a session timeout ago, and the chain
    /// has room for another piece.
    func canExtend(_ checkpoint: Checkpoint, now: ContinuousClock.Instant) -> Bool {
        guard let written = checkpoint.writtenAt, now - written < extendWithin else { return false }
        return checkpoint.chain.hasRoom && checkpoint.pieces.allSatisfy { $0.writer == writer }
    }

    /// What to write next for a partition whose last checkpoint is `previous`: what
    /// ``CheckpointChain/next(increment:whole:)`` chooses for its chain while
    /// ``canExtend(_:now:)`` allows, else the whole state.
    private func nextPiece(after previous: Checkpoint?, now: ContinuousClock.Instant, increment: (_ limit: Int) -> [UInt8]?, whole: () -> [UInt8]) -> (bytes: [UInt8], incremental: Bool) {
        var chain = previous.flatMap { canExtend($0, now: now) ? $0.chain : nil } ?? CheckpointChain()
        return chain.next(increment: increment, whole: whole)
    }

    /// Writes the next piece of `partition`'s chain after `previous` (``nextPiece(after:now:increment:whole:)``
    /// chooses it) with ``write(partition:sequence:nextOffset:state:incremental:previous:producer:)``;
    /// returns the checkpoint it makes, the piece's bytes and whether it is an increment.
    func writeNext(
        partition: Int32, nextOffset: Int64, after previous: Checkpoint?, now: ContinuousClock.Instant, producer: KafkaProducer,
        increment: (_ limit: Int) -> [UInt8]?, whole: () -> [UInt8]
    ) throws(KafkaError) -> (checkpoint: Checkpoint, bytes: Int, incremental: Bool) {
        let (bytes, incremental) = nextPiece(after: previous, now: now, increment: increment, whole: whole)
        let checkpoint = try write(partition: partition, sequence: (previous?.sequence ?? 0) + 1, nextOffset: nextOffset, state: bytes,
                                   incremental: incremental, previous: previous, producer: producer)
        return (checkpoint, bytes.count, incremental)
    }

    /// Produces a checkpoint (the piece's chunks, the manifest, then for a whole one
    /// tombstones for `previous`' pieces and the partition's stray chunks) through
    /// `producer`, inside its current transaction if it has one. `incremental`: `state` is
    /// an increment on `previous`, which ``canExtend(_:now:)`` allowed.
    func write(
        partition: Int32, sequence: UInt64, nextOffset: Int64, state: [UInt8], incremental: Bool = false, previous: Checkpoint?,
        producer: KafkaProducer
    ) throws(KafkaError) -> Checkpoint {
        guard !incremental || previous != nil else {
            throw KafkaError(code: .state, message: "an incremental checkpoint of \(topic)[\(partition)] without the checkpoint it extends")
        }
        let handle = try producer.topic(topic)
        let chunkCount = max(1, (state.count + CheckpointStore.chunkBytes - 1) / CheckpointStore.chunkBytes)
        for index in 0..<chunkCount {
            let lower = index * CheckpointStore.chunkBytes
            let upper = min(state.count, lower + CheckpointStore.chunkBytes)
            let key = Array(Self.chunkKey(partition: partition, sequence: sequence, writer: writer, index: index).utf8)
            var value: [UInt8] = [1]  // chunk format version
            value.append(contentsOf: state[lower..<upper])
            try produce(producer, handle, partition, key, value)
        }
        let piece = Piece(sequence: sequence, writer: writer, chunkCount: chunkCount, size: state.count, hash: state.withUnsafeBytes { Hash64.hash($0) })
        let pieces = (incremental ? previous?.pieces ?? [] : []) + [piece]
        var manifest = BinaryWriter(capacity: 64)
        manifest.write(3)
        manifest.writeSigned(nextOffset)
        manifest.writeVarint(pieces.count)
        for piece in pieces {
            manifest.writeVarint(piece.sequence)
            manifest.writeFixed64(piece.writer)
            manifest.writeVarint(piece.chunkCount)
            manifest.writeVarint(piece.size)
            manifest.writeFixed64(piece.hash)
        }
        try produce(producer, handle, partition, Array("m/\(partition)".utf8), manifest.bytes)
        let checkpoint = Checkpoint(nextOffset: nextOffset, pieces: pieces, writtenAt: .now)
        guard !incremental else { return checkpoint }
        // Complete: delete the chain before it and the chunks that no checkpoint listed at
        // the last restore, but no key just written again (a stray can be this process's
        // attempt at this sequence that failed before its manifest; the stage then rewound
        // to the checkpoint before it, and that key now holds the new chunk).
        let written = checkpoint.chunkKeys(partition: partition)
        let replaced = (previous?.chunkKeys(partition: partition) ?? []).subtracting(written).sorted()
        let stray = strays.withLock { $0[partition] ?? [] }.filter { !written.contains($0) }
        if !stray.isEmpty {
            logger.info("deleting chunks no checkpoint lists", metadata: [
                "changelog": "\(topic)", "partition": "\(partition)", "chunks": "\(stray.count)"])
        }
        for key in replaced + stray { try produce(producer, handle, partition, Array(key.utf8), nil) }
        strays.withLock { $0[partition] = nil }
        return checkpoint
    }

    /// The chunks of `partition` that its next whole checkpoint deletes: live in the
    /// changelog at its last restore, listed by no piece of the checkpoint it found.
    func strayChunks(of partition: Int32) -> [String] {
        strays.withLock { $0[partition] ?? [] }
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

    /// Reads changelog partitions `partitions` to their ends in one pass and returns, per
    /// partition, its newest complete checkpoint, `nil` if it has none, or why there is
    /// none to use. Throws if the changelog cannot be read at all. Blocks the caller (a
    /// stage thread).
    ///
    /// Offsets are committed only together with checkpoints, so a partition without a
    /// readable checkpoint whose group (`consumer`'s, on `input`) committed an offset past
    /// the start of the partition has state that cannot be read yet (the changelog is
    /// readable only up to a transaction the broker still reports open): it gets an error,
    /// never `nil`, because starting it without state would silently drop what it holds.
    ///
    /// `starts` gives, for a partition without a checkpoint, where to read from: its
    /// committed offset, or what `auto.offset.reset` says when it has none — the client's
    /// own lookup of a committed offset (`KafkaTopicPartition.stored`) delays the first
    /// fetch by about 100 ms.
    func restore(partitions: [Int32], input: String, consumer: KafkaConsumer?) throws(KafkaError)
        -> (checkpoints: [Int32: Result<Checkpoint?, KafkaError>], starts: [Int32: Int64])
    {
        var result = try restore(partitions: partitions)
        let empty = partitions.filter { partition in
            guard case .success(nil) = result[partition] else { return false }
            return true
        }
        guard let consumer, !empty.isEmpty else { return (result, [:]) }
        var starts: [Int32: Int64] = [:]
        for entry in try consumer.committed(empty.map { KafkaTopicPartition(topic: input, partition: $0, offset: KafkaTopicPartition.invalid) }) {
            guard entry.offset >= 0, entry.offset > (try consumer.watermarks(topic: input, partition: entry.partition, timeout: .seconds(5)).low) else {
                starts[entry.partition] = start(committed: entry.offset)
                continue
            }
            result[entry.partition] = .failure(KafkaError(code: .state, message:
                "partition \(entry.partition) has committed offset \(entry.offset) but no checkpoint is readable in \(topic) "
                + "(a transaction on it is still open?); not starting it without its state. If the changelog was deleted on purpose, "
                + "delete the consumer groups too (see Resetting state)"))
        }
        return (result, starts)
    }

    /// Where a partition without a checkpoint starts reading: its committed offset
    /// (`committed`; negative when it has none), else where `auto.offset.reset` says.
    func start(committed: Int64) -> Int64 {
        committed >= 0 ? committed : Self.resetOffset(kafka.properties["auto.offset.reset"])
    }

    /// Where a partition without a committed offset starts, as `auto.offset.reset` (the
    /// client's default: earliest) says; `error` is left to the client.
    static func resetOffset(_ setting: String?) -> Int64 {
        switch setting ?? "earliest" {
        case "earliest", "smallest", "beginning": KafkaTopicPartition.beginning
        case "latest", "largest", "end": KafkaTopicPartition.end
        default: KafkaTopicPartition.stored
        }
    }

    private func restore(partitions: [Int32]) throws(KafkaError) -> [Int32: Result<Checkpoint?, KafkaError>] {
        guard !partitions.isEmpty else { return [:] }
        // Short fetch waits: the last (empty) fetch, which reports the end, then returns at
        // once instead of after the default 500 ms.
        var common = kafka
        common.properties["fetch.wait.max.ms"] = "10"
        let consumer = try KafkaConsumer(
            configuration: KafkaConsumerConfiguration(common: common, groupID: "\(topic)-restore", isolationLevel: .readCommitted, enablePartitionEOF: true),
            logger: logger)
        // Nothing waits for this consumer's end: the restore returns while it is destroyed.
        consumer.destroyInBackgroundWhenReleased()
        // Read to each end-of-partition event, not to a queried high watermark: some
        // brokers (the local test broker) report the start of the last batch as the high
        // watermark, which would make a one-batch changelog look empty.
        try consumer.assign(partitions.map { KafkaTopicPartition(topic: topic, partition: $0, offset: KafkaTopicPartition.beginning) })
        var logs = Dictionary(uniqueKeysWithValues: partitions.map { ($0, PartitionLog()) })
        var remaining = Set(partitions)
        var idle = 0
        while !remaining.isEmpty && idle < 300 {
            let received: Int
            do {
                received = try consumer.poll(maxMessages: 1_000, timeout: .milliseconds(100)) { batch in
                    if let error = batch.errors.first { throw error }
                    for message in batch { logs[message.partition]?.apply(key: message.key, value: message.value) }
                    for end in batch.partitionEOFs { remaining.remove(end.partition) }
                }
            } catch let error as KafkaError {
                throw error
            } catch {
                throw KafkaError(code: .fatal, message: "restore of \(topic): \(error)")
            }
            idle = received == 0 ? idle + 1 : 0
        }
        guard remaining.isEmpty else {
            throw KafkaError(code: .timedOut, message: "restore of \(topic) \(remaining.sorted()) did not reach the end of the changelog")
        }
        var result: [Int32: Result<Checkpoint?, KafkaError>] = [:]
        for (partition, log) in logs {
            result[partition] = Result { () throws(KafkaError) in
                let (checkpoint, skipped) = try log.newestCheckpoint(topic: topic, partition: partition)
                for error in skipped { logger.warning("restoring an older checkpoint of \(topic)[\(partition)]: \(error.message)") }
                let listed = checkpoint?.chunkKeys(partition: partition) ?? []
                let stray = log.chunks.keys.filter { !listed.contains($0) }.sorted()
                strays.withLock { $0[partition] = stray }
                return checkpoint
            }
        }
        return result
    }

    /// What one changelog partition holds: its manifests, oldest first (those compaction
    /// has not removed yet), and the live chunks.
    private struct PartitionLog {
        var manifests: [(nextOffset: Int64, pieces: [Piece])] = []
        var chunks: [String: [UInt8]] = [:]

        mutating func apply(key: UnsafeRawBufferPointer?, value: UnsafeRawBufferPointer) {
            let key = key.map { String(decoding: $0, as: UTF8.self) } ?? ""
            if key.hasPrefix("m/") {
                var reader = BinaryReader(Array(value))
                guard let manifest = try? Self.manifest(&reader) else { return }
                manifests.append(manifest)
            } else if value.isEmpty {
                chunks[key] = nil
            } else {
                chunks[key] = Array(value.dropFirst())
            }
        }

        /// Version 1 had no writer (chunk keys without one); 2 adds it; 3 lists a chain of
        /// pieces (1 and 2: one whole state).
        private static func manifest(_ reader: inout BinaryReader) throws(BinaryReader.Error) -> (nextOffset: Int64, pieces: [Piece]) {
            let version = try reader.readVersion(1...3, of: "manifest")
            guard version < 3 else {
                let nextOffset = try reader.readSigned()
                let count = try reader.readCount(limit: 1 << 16)
                var pieces: [Piece] = []
                for _ in 0..<count {
                    pieces.append(Piece(
                        sequence: try reader.readVarint(), writer: try reader.readFixed64(), chunkCount: try reader.readInt(),
                        size: try reader.readInt(), hash: try reader.readFixed64()))
                }
                return (nextOffset, pieces)
            }
            let sequence = try reader.readVarint()
            let nextOffset = try reader.readSigned()
            let count = try reader.readInt()
            let size = try reader.readInt()
            let hash = try reader.readFixed64()
            let writer = version >= 2 ? try reader.readFixed64() : 0
            return (nextOffset, [Piece(sequence: sequence, writer: writer, chunkCount: count, size: size, hash: hash)])
        }

        /// The newest checkpoint whose pieces are all there, intact. An older one is used
        /// only when the newest is not (a process that went on writing increments after
        /// another took its partition over and deleted its chain's pieces): replaying from
        /// its offset gives the same outputs again.
        /// `skipped`: why each newer one could not be used.
        func newestCheckpoint(topic: String, partition: Int32) throws(KafkaError) -> (checkpoint: Checkpoint?, skipped: [KafkaError]) {
            var skipped: [KafkaError] = []
            for manifest in manifests.reversed() {
                do {
                    return (try checkpoint(manifest, topic: topic, partition: partition), skipped)
                } catch {
                    skipped.append(error)
                }
            }
            if let newest = skipped.first { throw newest }
            return (nil, [])
        }

        private func checkpoint(_ manifest: (nextOffset: Int64, pieces: [Piece]), topic: String, partition: Int32) throws(KafkaError) -> Checkpoint? {
            guard !manifest.pieces.isEmpty else { return nil }
            var states: [[UInt8]] = []
            for piece in manifest.pieces {
                var state: [UInt8] = []
                state.reserveCapacity(piece.size)
                for index in 0..<piece.chunkCount {
                    let key = CheckpointStore.chunkKey(partition: partition, sequence: piece.sequence, writer: piece.writer, index: index)
                    guard let chunk = chunks[key] else {
                        throw KafkaError(code: .state, message: "checkpoint \(piece.sequence) of \(topic)[\(partition)] misses chunk \(index)")
                    }
                    state.append(contentsOf: chunk)
                }
                let hash = state.withUnsafeBytes { Hash64.hash($0) }
                guard state.count == piece.size, hash == piece.hash else {
                    throw KafkaError(code: .state, message: "checkpoint \(piece.sequence) of \(topic)[\(partition)] is corrupt (size or hash mismatch)")
                }
                states.append(state)
            }
            return Checkpoint(nextOffset: manifest.nextOffset, pieces: manifest.pieces, states: states)
        }
    }
}

/// The sizes of a partition's checkpoint chain (a whole state, then increments on it) and
/// the rule for its next piece, which the stages' checkpoints and `pulse bench core` share.
struct CheckpointChain: Equatable {
    /// Most pieces in a chain (its whole state included).
    static let maxPieces = 16
    /// The whole state's bytes (0: no chain yet).
    var wholeBytes = 0
    /// The increments' bytes together.
    var incrementBytes = 0
    /// Pieces in the chain, its whole state included.
    var pieces = 0

    /// Whether another increment may follow: there is a whole state and room for a piece.
    var hasRoom: Bool { pieces > 0 && pieces < Self.maxPieces }

    /// The next piece, which the chain then includes: an increment while it has room and
    /// the increments stay smaller together than the whole state (so a restore reads at
    /// most twice that), else the whole state, which starts a new chain. `increment` gets
    /// the bytes the increment may take and returns nil when the state cannot write one
    /// (or, if it can tell early, one that large).
    mutating func next(increment: (_ limit: Int) -> [UInt8]?, whole: () -> [UInt8]) -> (bytes: [UInt8], incremental: Bool) {
        let limit = wholeBytes - incrementBytes
        if hasRoom, limit > 0, let bytes = increment(limit), bytes.count <= limit {
            incrementBytes += bytes.count
            pieces += 1
            return (bytes, true)
        }
        let bytes = whole()
        self = CheckpointChain(wholeBytes: bytes.count, incrementBytes: 0, pieces: 1)
        return (bytes, false)
    }
}
