/// A named segment defined by a boolean rule over an event's attributes and type.
///
/// The language: comparisons `name == "value"`, `name != "value"`,
/// `name in ["a", "b"]`, `name not in [...]`, combined with `and`, `or`, `not` and
/// parentheses (`not` binds tightest, then `and`, then `or`). `name` is an attribute name
/// (letters, digits, `_`, `-`, `.`), or `type` for the event type. Strings use double or
/// single quotes with `\` escapes. A missing attribute equals no value: `==` and `in` are
/// false, `!=` and `not in` true. Example: `plan == "pro" and device != "desktop"`.
///
/// Compiled once (``compile(_:)``); evaluation walks a flat node array without allocating.
public struct SegmentRule: Sendable, Hashable {
    /// The rule's source text.
    public let source: String
    /// Attribute names the rule reads (each needs a decoder slot).
    public let attributeNames: [String]
    let nodes: [Node]
    let root: Int

    enum Operand: Sendable, Hashable {
        case type
        case attribute(Int)  // index into attributeNames
    }

    enum Node: Sendable, Hashable {
        case equals(Operand, [UInt8], UInt64)
        case member(Operand, [[UInt8]], [UInt64])
        case not(Int)
        case and(Int, Int)
        case or(Int, Int)
    }

    /// A rule that did not parse: what and where.
    public struct ParseError: Error, Sendable, Hashable, CustomStringConvertible {
        public var message: String
        public var position: Int
        public var description: String { "\(message) at character \(position + 1)" }
    }

    /// Parses and compiles a rule.
    public static func compile(_ source: String) throws(ParseError) -> SegmentRule {
        var parser = Parser(text: Array(source.utf8))
        let root = try parser.parseOr()
        parser.skipSpaces()
        guard parser.position == parser.text.count else {
            throw ParseError(message: "unexpected text", position: parser.position)
        }
        return SegmentRule(source: source, attributeNames: parser.names, nodes: parser.nodes, root: root)
    }

    /// Evaluates the rule. `value(i)` gives the bytes and hash of `attributeNames[i]` for
    /// the event (`nil` when absent); `type` the event type's bytes and hash.
    @inline(__always)
    func evaluate(
        type: (UnsafeRawBufferPointer, UInt64),
        value: (Int) -> (UnsafeRawBufferPointer, UInt64)?
    ) -> Bool {
        evaluate(root, type: type, value: value)
    }

    private func evaluate(_ index: Int, type: (UnsafeRawBufferPointer, UInt64), value: (Int) -> (UnsafeRawBufferPointer, UInt64)?) -> Bool {
        func resolve(_ operand: Operand) -> (UnsafeRawBufferPointer, UInt64)? {
            switch operand {
            case .type: type
            case .attribute(let slot): value(slot)
            }
        }
        func same(_ actual: (UnsafeRawBufferPointer, UInt64), _ literal: [UInt8], _ hash: UInt64) -> Bool {
            actual.1 == hash && actual.0.count == literal.count && literal.withUnsafeBytes { actual.0.elementsEqual($0) }
        }
        switch nodes[index] {
        case .equals(let operand, let literal, let hash):
            guard let actual = resolve(operand) else { return false }
            return same(actual, literal, hash)
        case .member(let operand, let literals, let hashes):
            guard let actual = resolve(operand) else { return false }
            for k in literals.indices where same(actual, literals[k], hashes[k]) { return true }
            return false
        case .not(let inner):
            return !evaluate(inner, type: type, value: value)
        case .and(let left, let right):
            return evaluate(left, type: type, value: value) && evaluate(right, type: type, value: value)
        case .or(let left, let right):
            return evaluate(left, type: type, value: value) || evaluate(right, type: type, value: value)
        }
    }

    private struct Parser {
        let text: [UInt8]
        var position = 0
        var nodes: [Node] = []
        var names: [String] = []

        mutating func skipSpaces() {
            while position < text.count, text[position] == 0x20 || text[position] == 0x09 || text[position] == 0x0a || text[position] == 0x0d {
                position += 1
            }
        }

        mutating func add(_ node: Node) -> Int {
            nodes.append(node)
            return nodes.count - 1
        }

        func isWordByte(_ byte: UInt8) -> Bool {
            (byte >= 0x30 && byte <= 0x39) || (byte >= 0x41 && byte <= 0x5a) || (byte >= 0x61 && byte <= 0x7a)
                || byte == UInt8(ascii: "_") || byte == UInt8(ascii: "-") || byte == UInt8(ascii: ".")
        }

        mutating func keyword(_ word: String) -> Bool {
            skipSpaces()
            let bytes = Array(word.utf8)
            guard text.count - position >= bytes.count, Array(text[position..<(position + bytes.count)]) == bytes else { return false }
            let end = position + bytes.count
            if end < text.count, isWordByte(text[end]) { return false }
            position = end
            return true
        }

        mutating func symbol(_ word: String) -> Bool {
            skipSpaces()
            let bytes = Array(word.utf8)
            guard text.count - position >= bytes.count, Array(text[position..<(position + bytes.count)]) == bytes else { return false }
            position += bytes.count
            return true
        }

        mutating func parseOr() throws(ParseError) -> Int {
            var left = try parseAnd()
            while keyword("or") { left = add(.or(left, try parseAnd())) }
            return left
        }

        mutating func parseAnd() throws(ParseError) -> Int {
            var left = try parseUnary()
            while keyword("and") { left = add(.and(left, try parseUnary())) }
            return left
        }

        mutating func parseUnary() throws(ParseError) -> Int {
            if keyword("not") { return add(.not(try parseUnary())) }
            if symbol("(") {
                let inner = try parseOr()
                guard symbol(")") else { throw ParseError(message: "expected )", position: position) }
                return inner
            }
            return try parseComparison()
        }

        mutating func parseComparison() throws(ParseError) -> Int {
            skipSpaces()
            let start = position
            while position < text.count, isWordByte(text[position]) { position += 1 }
            guard position > start else { throw ParseError(message: "expected an attribute name or type", position: start) }
            let name = String(decoding: text[start..<position], as: UTF8.self)
            guard !["and", "or", "not", "in"].contains(name) else { throw ParseError(message: "expected an attribute name, found '\(name)'", position: start) }
            let operand: Operand
            if name == "type" {
                operand = .type
            } else if let existing = names.firstIndex(of: name) {
                operand = .attribute(existing)
            } else {
                names.append(name)
                operand = .attribute(names.count - 1)
            }
            if symbol("==") {
                let literal = try parseString()
                return add(.equals(operand, literal, literal.withUnsafeBytes { Hash64.hash($0) }))
            }
            if symbol("!=") {
                let literal = try parseString()
                let equals = add(.equals(operand, literal, literal.withUnsafeBytes { Hash64.hash($0) }))
                return add(.not(equals))
            }
            let negated = keyword("not")
            guard keyword("in") else {
                throw ParseError(message: negated ? "expected 'in' after 'not'" : "expected ==, != or in", position: position)
            }
            guard symbol("[") else { throw ParseError(message: "expected [", position: position) }
            var literals: [[UInt8]] = [try parseString()]
            while symbol(",") { literals.append(try parseString()) }
            guard symbol("]") else { throw ParseError(message: "expected ] or ,", position: position) }
            let member = add(.member(operand, literals, literals.map { $0.withUnsafeBytes { Hash64.hash($0) } }))
            return negated ? add(.not(member)) : member
        }

        mutating func parseString() throws(ParseError) -> [UInt8] {
            skipSpaces()
            guard position < text.count, text[position] == UInt8(ascii: "\"") || text[position] == UInt8(ascii: "'") else {
                throw ParseError(message: "expected a quoted string", position: position)
            }
            let quote = text[position]
            position += 1
            var result: [UInt8] = []
            while position < text.count, text[position] != quote {
                if text[position] == UInt8(ascii: "\\"), position + 1 < text.count { position += 1 }
                result.append(text[position])
                position += 1
            }
            guard position < text.count else { throw ParseError(message: "unterminated string", position: position) }
            position += 1
            return result
        }
    }
}
