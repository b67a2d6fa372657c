CREATE TABLE "rate_windows" (
	"workspace_id" text NOT NULL,
	"window_start" timestamp with time zone NOT NULL,
	"used" integer NOT NULL,
	CONSTRAINT "rate_windows_workspace_id_window_start_pk" PRIMARY KEY("workspace_id","window_start")
);
