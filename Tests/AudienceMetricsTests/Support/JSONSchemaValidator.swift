import Foundation

/// A validator for the subset of JSON Schema the record schema uses: `type` (string or
/// list, with "integer"), `const`, `required`, `properties`, `additionalProperties`
/// (false or a schema), `items`, `minimum`, `maximum`, `minLength`.
struct JSONSchemaValidator {
    let schema: [String: Any]

    init(file: String) throws {
        let data = try Data(contentsOf: URL(fileURLWithPath: file))
        schema = try JSONSerialization.jsonObject(with: data) as? [String: Any] ?? [:]
    }

    /// A parsed JSON value that keeps booleans, integers and other numbers apart.
    enum Value: Decodable {
        case null, bool(Bool), integer(Int64), number(Double), string(String), array([Value]), object([String: Value])

        init(from decoder: any Decoder) throws {
            let container = try decoder.singleValueContainer()
            if container.decodeNil() { self = .null }
            else if let value = try? container.decode(Bool.self) { self = .bool(value) }
            else if let value = try? container.decode(Int64.self) { self = .integer(value) }
            else if let value = try? container.decode(Double.self) { self = .number(value) }
            else if let value = try? container.decode(String.self) { self = .string(value) }
            else if let value = try? container.decode([Value].self) { self = .array(value) }
            else { self = .object(try container.decode([String: Value].self)) }
        }
    }

    /// Problems found in `json`, each with its JSON path; empty when valid.
    func problems(in json: String) throws -> [String] {
        let value = try JSONDecoder().decode(Value.self, from: Data(json.utf8))
        var found: [String] = []
        check(value, against: schema, path: "$", problems: &found)
        return found
    }

    private func typeName(_ value: Value) -> String {
        switch value {
        case .null: "null"
        case .bool: "boolean"
        case .integer: "integer"
        case .number: "number"
        case .string: "string"
        case .array: "array"
        case .object: "object"
        }
    }

    private func check(_ value: Value, against schema: [String: Any], path: String, problems: inout [String]) {
        let actual = typeName(value)
        if let type = schema["type"] {
            let allowed = (type as? [String]) ?? [(type as? String) ?? ""]
            let ok = allowed.contains(actual) || (actual == "integer" && allowed.contains("number"))
            if !ok {
                problems.append("\(path): \(actual) is not \(allowed)")
                return
            }
        }
        if let constant = schema["const"] as? String {
            if case .string(let string) = value, string == constant {} else { problems.append("\(path): expected \(constant)") }
        }
        let number: Double? = switch value {
        case .integer(let integer): Double(integer)
        case .number(let double): double
        default: nil
        }
        if let number {
            if let minimum = (schema["minimum"] as? NSNumber)?.doubleValue, number < minimum { problems.append("\(path): \(number) < \(minimum)") }
            if let maximum = (schema["maximum"] as? NSNumber)?.doubleValue, number > maximum { problems.append("\(path): \(number) > \(maximum)") }
        }
        if case .string(let string) = value, let minLength = (schema["minLength"] as? NSNumber)?.intValue, string.count < minLength {
            problems.append("\(path): shorter than \(minLength)")
        }
        if case .object(let object) = value {
            for key in schema["required"] as? [String] ?? [] where object[key] == nil { problems.append("\(path): missing \(key)") }
            for (present, needed) in schema["dependentRequired"] as? [String: [String]] ?? [:] where object[present] != nil {
                for key in needed where object[key] == nil { problems.append("\(path): \(present) without \(key)") }
            }
            let properties = schema["properties"] as? [String: Any] ?? [:]
            for (key, member) in object {
                if let memberSchema = properties[key] as? [String: Any] {
                    check(member, against: memberSchema, path: "\(path).\(key)", problems: &problems)
                } else if let additional = schema["additionalProperties"] as? [String: Any] {
                    check(member, against: additional, path: "\(path).\(key)", problems: &problems)
                } else if schema["additionalProperties"] as? Bool == false {
                    problems.append("\(path): unexpected \(key)")
                }
            }
        }
        if case .array(let array) = value, let items = schema["items"] as? [String: Any] {
            for (index, element) in array.enumerated() { check(element, against: items, path: "\(path)[\(index)]", problems: &problems) }
        }
    }
}
