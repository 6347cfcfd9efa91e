import Hummingbird

/// CORS for the collector: browsers on the configured origins (or any, with `*`) may send
/// events. Preflight requests get the allowed method and headers; other responses get
/// `Access-Control-Allow-Origin` echoing an allowed origin. Other origins get no CORS
/// headers, so the browser blocks them.
struct CORSAllowList<Context: RequestContext>: RouterMiddleware {
    let origins: Set<String>

    func allows(_ origin: String) -> Bool { origins.contains("*") || origins.contains(origin) }

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        guard let origin = request.headers[.origin], allows(origin) else { return try await next(request, context) }
        var response: Response
        if request.method == .options {
            response = Response(status: .noContent)
            response.headers[.accessControlAllowMethods] = "POST, OPTIONS"
            response.headers[.accessControlAllowHeaders] = "Authorization, Content-Type"
            response.headers[.accessControlMaxAge] = "600"
        } else {
            response = try await next(request, context)
        }
        response.headers[.accessControlAllowOrigin] = origin
        response.headers[.vary] = "Origin"
        return response
    }
}
