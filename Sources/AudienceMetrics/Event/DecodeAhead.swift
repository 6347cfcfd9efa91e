/// Two decoders used in turn, so that a message is decoded one step ahead of its
/// processing: while message n waits to be processed, message n + 1 is decoded and the
/// state its processing will touch first is requested from memory (``PartitionAggregator/prefetch(_:)``).
/// Processing an event starts with two lookups in tables larger than the caches (its id
/// among the remembered ones, its user); requested a message ahead, those loads overlap
/// the decoding and processing in between instead of stalling it.
///
/// Order is unchanged: `body` sees every message once, in order, and nothing but the
/// decoding moves ahead (decoding has no effect outside its decoder). Not thread-safe:
/// one per processing thread.
public final class DecodeAhead {
    private let decoders: (EventDecoder, EventDecoder)

    public init(mapping: InputMapping = .contract, limits: EventLimits = EventLimits(), attributeNames: [String] = []) {
        decoders = (EventDecoder(mapping: mapping, limits: limits, attributeNames: attributeNames),
                    EventDecoder(mapping: mapping, limits: limits, attributeNames: attributeNames))
    }

    /// Decodes the messages of `indices` in order (`decode` decodes one with the decoder
    /// given) and calls `body` for each, in order, with the decoder holding it and the
    /// reason it was rejected, if it was; `body` for a message runs after the next one was
    /// decoded and, if valid, passed to `prefetch`.
    @inline(__always)
    public func forEach(_ indices: Range<Int>, decode: (Int, EventDecoder) -> RejectReason?, prefetch: (Int, DecodedEvent) -> Void,
                        _ body: (Int, EventDecoder, RejectReason?) throws -> Void) rethrows {
        var pending: (index: Int, decoder: EventDecoder, rejected: RejectReason?)?
        var useFirst = true
        for index in indices {
            let decoder = useFirst ? decoders.0 : decoders.1
            useFirst.toggle()
            let rejected = decode(index, decoder)
            if rejected == nil { prefetch(index, decoder.event) }
            if let pending { try body(pending.index, pending.decoder, pending.rejected) }
            pending = (index, decoder, rejected)
        }
        if let pending { try body(pending.index, pending.decoder, pending.rejected) }
    }
}
