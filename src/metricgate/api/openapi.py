"""OpenAPI 3.1 description of metricgate's own upload and reference API (served as JSON).

Hand-written on purpose: the API is small, and the document is the contract clients code
against. tests/api/test_upload_openapi.py checks that it lists exactly the routes we serve.
"""

from __future__ import annotations

from typing import Any

_ERROR = {"$ref": "#/components/responses/Error"}
_UPLOAD_ID = {
    "name": "upload_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "pattern": "^[0-9a-f]{32}$"},
}
_SESSION_OK = {
    "description": "The upload session",
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/UploadSession"}}},
}


def _errors(*statuses: int) -> dict[str, Any]:
    return {str(status): _ERROR for status in statuses}


_SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "required": ["error_code", "message"],
        "properties": {
            "error_code": {
                "type": "string",
                "examples": ["INVALID_PARAMETER_VALUE", "RESOURCE_DOES_NOT_EXIST"],
            },
            "message": {"type": "string"},
        },
    },
    "FileSpec": {
        "type": "object",
        "required": ["size"],
        "properties": {
            "path": {
                "type": "string",
                "description": "Relative to the session's path; omitted for a file upload",
            },
            "size": {"type": "integer", "minimum": 0},
            "sha256": {
                "type": "string",
                "description": "Whole-file SHA-256 (hex or base64), verified at completion",
            },
        },
    },
    "CreateUpload": {
        "type": "object",
        "required": ["run_id", "part_size", "files"],
        "properties": {
            "run_id": {"type": "string"},
            "path": {
                "type": "string",
                "description": "Destination relative to the run's artifact root",
            },
            "directory": {
                "type": "boolean",
                "default": False,
                "description": "Several files, committed together",
            },
            "part_size": {
                "type": "integer",
                "description": "Bytes per part (server-configured bounds)",
            },
            "files": {
                "type": "array",
                "items": {"$ref": "#/components/schemas/FileSpec"},
                "minItems": 1,
            },
            "actor": {"type": "string"},
        },
    },
    "Part": {
        "type": "object",
        "properties": {
            "part_number": {"type": "integer", "minimum": 1, "maximum": 10000},
            "size": {"type": "integer"},
            "sha256": {"type": "string"},
            "etag": {"type": "string"},
        },
    },
    "UploadFile": {
        "type": "object",
        "properties": {
            "index": {"type": "integer"},
            "path": {"type": "string"},
            "size": {"type": "integer"},
            "sha256": {"type": ["string", "null"]},
            "part_count": {"type": "integer"},
            "committed": {"type": "boolean"},
            "parts": {"type": "array", "items": {"$ref": "#/components/schemas/Part"}},
            "missing_parts": {"type": "array", "items": {"type": "integer"}},
        },
    },
    "UploadSession": {
        "type": "object",
        "properties": {
            "upload_id": {"type": "string"},
            "run_id": {"type": "string"},
            "path": {"type": "string"},
            "directory": {"type": "boolean"},
            "state": {
                "type": "string",
                "enum": ["open", "committing", "committed", "aborted", "expired"],
            },
            "part_size": {"type": "integer"},
            "total_size": {"type": "integer"},
            "expires_at": {"type": "integer", "description": "Milliseconds since the epoch"},
            "created_at": {"type": "integer"},
            "updated_at": {"type": "integer"},
            "actor": {
                "type": "string",
                "description": "X-Metricgate-Actor header, the body's actor, or the client address",
            },
            "failure": {"type": "string"},
            "files": {"type": "array", "items": {"$ref": "#/components/schemas/UploadFile"}},
        },
    },
    "Reference": {
        "type": "object",
        "properties": {
            "run_id": {"type": "string"},
            "path": {"type": "string"},
            "uri": {"type": "string", "examples": ["s3://bucket/checkpoints/step-1000.pt"]},
            "size": {"type": "integer"},
            "sha256": {"type": ["string", "null"]},
            "etag": {"type": ["string", "null"]},
            "registered_at": {"type": "integer"},
        },
    },
    "CreateReference": {
        "type": "object",
        "required": ["run_id", "path", "uri", "size"],
        "properties": {
            "run_id": {"type": "string"},
            "path": {"type": "string"},
            "uri": {"type": "string"},
            "size": {
                "type": "integer",
                "description": "Must equal the object's size (checked by HEAD)",
            },
            "sha256": {"type": "string"},
            "etag": {
                "type": "string",
                "description": "Checked against the object's ETag when both are known",
            },
        },
    },
}

_PATHS: dict[str, Any] = {
    "/api/2.0/metricgate/uploads": {
        "post": {
            "summary": "Create an upload session (one file, or a directory committed all-or-nothing)",
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {"schema": {"$ref": "#/components/schemas/CreateUpload"}}
                },
            },
            "responses": {"200": _SESSION_OK, **_errors(400, 404)},
        }
    },
    "/api/2.0/metricgate/uploads/{upload_id}": {
        "parameters": [_UPLOAD_ID],
        "get": {
            "summary": "The session and the parts the server already has, per file (resume from missing_parts)",
            "responses": {"200": _SESSION_OK, **_errors(404)},
        },
        "delete": {
            "summary": "Abort the session and discard its staged data",
            "responses": {"200": _SESSION_OK, **_errors(400, 404)},
        },
    },
    "/api/2.0/metricgate/uploads/{upload_id}/files/{file_index}/parts/{part_number}": {
        "parameters": [
            _UPLOAD_ID,
            {
                "name": "file_index",
                "in": "path",
                "required": True,
                "schema": {"type": "integer", "minimum": 0},
            },
            {
                "name": "part_number",
                "in": "path",
                "required": True,
                "schema": {"type": "integer", "minimum": 1, "maximum": 10000},
            },
            {
                "name": "X-Checksum-SHA256",
                "in": "header",
                "schema": {"type": "string"},
                "description": "SHA-256 of the part (hex or base64); a mismatch discards the part",
            },
            {
                "name": "Content-MD5",
                "in": "header",
                "schema": {"type": "string"},
                "description": "Base64 MD5 of the part; a mismatch discards the part",
            },
        ],
        "put": {
            "summary": "Upload one part (any order, in parallel; re-uploading a part replaces it)",
            "requestBody": {
                "required": True,
                "content": {
                    "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}
                },
            },
            "responses": {
                "200": {
                    "description": "The stored part",
                    "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/Part"}}
                    },
                },
                **_errors(400, 404),
            },
        },
    },
    "/api/2.0/metricgate/uploads/{upload_id}/complete": {
        "parameters": [_UPLOAD_ID],
        "post": {
            "summary": "Verify every part, sizes and SHA-256, then make all files visible at once (idempotent)",
            "responses": {"200": _SESSION_OK, **_errors(400, 404, 503)},
        },
    },
    "/api/2.0/metricgate/artifact-references": {
        "post": {
            "summary": "Register an existing object as a run artifact without copying it (verified by HEAD)",
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {"schema": {"$ref": "#/components/schemas/CreateReference"}}
                },
            },
            "responses": {
                "200": {
                    "description": "The reference",
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "properties": {
                                    "reference": {"$ref": "#/components/schemas/Reference"}
                                },
                            }
                        }
                    },
                },
                **_errors(400, 404),
            },
        },
        "get": {
            "summary": "A run's references",
            "parameters": [
                {"name": "run_id", "in": "query", "required": True, "schema": {"type": "string"}}
            ],
            "responses": {
                "200": {
                    "description": "References",
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "properties": {
                                    "references": {
                                        "type": "array",
                                        "items": {"$ref": "#/components/schemas/Reference"},
                                    }
                                },
                            }
                        }
                    },
                },
                **_errors(404),
            },
        },
        "delete": {
            "summary": "Remove a reference (the referenced object is left alone)",
            "parameters": [
                {"name": "run_id", "in": "query", "required": True, "schema": {"type": "string"}},
                {"name": "path", "in": "query", "required": True, "schema": {"type": "string"}},
            ],
            "responses": {"200": {"description": "Removed"}, **_errors(400, 404)},
        },
    },
    "/api/2.0/metricgate/openapi.json": {
        "get": {
            "summary": "This document",
            "responses": {"200": {"description": "OpenAPI 3.1 JSON"}},
        },
    },
}

OPENAPI: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "metricgate uploads and artifact references",
        "version": "1",
        "description": "Resumable, verified, all-or-nothing artifact uploads; errors use MLflow's "
        '{"error_code", "message"} format. See README.md and docs/design-artifacts.md.',
    },
    "paths": _PATHS,
    "components": {
        "schemas": _SCHEMAS,
        "responses": {
            "Error": {
                "description": "MLflow-style error",
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
            }
        },
    },
}
