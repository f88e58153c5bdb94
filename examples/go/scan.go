package main

import "time"

// Scan is com.passentry.bridge.v1.ScanEvent (schemas/passentry_scan/v1.avsc). The avro tags
// name the schema's fields; hamba/avro fills optional fields (["null", T] unions) as
// pointers and timestamp-millis as time.Time. Fields the writer has and Scan does not (a newer
// schema's) are skipped.
type Scan struct {
	ScanID         string     `avro:"scanId"`
	CreatedAt      time.Time  `avro:"createdAt"`
	ScannedAt      *time.Time `avro:"scannedAt"`
	ScanType       string     `avro:"scanType"`
	ScanValue      *string    `avro:"scanValue"`
	ValidationType string     `avro:"validationType"`
	Status         string     `avro:"status"`
	StatusDetail   *string    `avro:"statusDetail"`
	ReaderID       string     `avro:"readerId"`
	PassID         *string    `avro:"passId"`
	SourceID       string     `avro:"sourceId"`
	Pass           *Pass      `avro:"pass"`
	Reader         *Reader    `avro:"reader"`
}

type Pass struct {
	ID               string            `avro:"id"`
	ExtID            *string           `avro:"extId"`
	PassType         *string           `avro:"passType"`
	Status           *string           `avro:"status"`
	DeviceType       *string           `avro:"deviceType"`
	PassTemplateUUID *string           `avro:"passTemplateUuid"`
	PassTemplateName *string           `avro:"passTemplateName"`
	DownloadURL      *string           `avro:"downloadUrl"`
	NFC              *string           `avro:"nfc"`
	Barcode          *Barcode          `avro:"barcode"`
	PassContent      map[string]string `avro:"passContent"`
	CreatedAt        *time.Time        `avro:"createdAt"`
	AddedAt          *time.Time        `avro:"addedAt"`
	RemovedAt        *time.Time        `avro:"removedAt"`
	DeactivatedAt    *time.Time        `avro:"deactivatedAt"`
}

type Barcode struct {
	Enabled     *bool   `avro:"enabled"`
	Type        *string `avro:"type"`
	Source      *string `avro:"source"`
	Value       *string `avro:"value"`
	DisplayText *bool   `avro:"displayText"`
}

type Reader struct {
	ID                     string     `avro:"id"`
	Name                   *string    `avro:"name"`
	ReaderType             *string    `avro:"readerType"`
	LoggedIn               *bool      `avro:"loggedIn"`
	QREnabled              *bool      `avro:"qrEnabled"`
	MifareClassicNFCEnable *bool      `avro:"mifareClassicNfcEnabled"`
	ScanEnabled            *bool      `avro:"scanEnabled"`
	RedeemEnabled          *bool      `avro:"redeemEnabled"`
	AddPointsEnabled       *bool      `avro:"addPointsEnabled"`
	NDEFTagScanningEnabled *bool      `avro:"ndefTagScanningEnabled"`
	LastSeenAt             *time.Time `avro:"lastSeenAt"`
}
